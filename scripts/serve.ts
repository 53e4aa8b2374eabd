// An OpenAI-compatible server over the kit's own model (lib/models/transformer.ts generate), on
// loopback by default: GET /v1/models, POST /v1/completions and /v1/chat/completions, with
// streaming (server-sent events, one chunk per generated token) or one JSON response. Requests
// are served one at a time (one model, one tfjs backend); concurrent requests queue.
//
//   npx tsx scripts/serve.ts --model models/stories260K/stories260K.bin [--port 8000] [--backend wasm]
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainModule } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { loadModel } from '../lib/models/load';
import { generate } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { initRuntime, parseBackend } from '../lib/runtime';
helpFromHeader(import.meta.url);

export interface ServeOptions {
  host: string; // interface to listen on (loopback: nothing outside this machine can reach it)
  port: number; // 0 picks a free port
  modelId: string | null; // id reported by /v1/models (default: the model's name)
  maxTokensDefault: number; // max_tokens when a request gives none (OpenAI's completions default is 16)
}

export const serveDefaults: ServeOptions = {
  host: '127.0.0.1', // loopback only
  port: 8000, // vLLM's default port
  modelId: null, // model.name
  maxTokensDefault: 16, // OpenAI's default for /v1/completions
};

interface CompletionRequest {
  prompt?: string | number[];
  messages?: { role: string; content: string }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  seed?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  ignore_eos?: boolean;
  model?: string;
}

class BadRequest extends Error {}

/** Prompt token ids of a request: a token array or text (chat: the messages' contents joined by newlines). */
function promptOf(model: Model, req: CompletionRequest, chat: boolean): number[] {
  const tok = model.tokenizer;
  if (chat) {
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw new BadRequest("'messages' must be a non-empty array");
    // A base language model has no chat template: the conversation is plain text, BOS first.
    const text = req.messages.map((m) => String(m.content ?? '')).join('\n');
    return tok.encode(text, { bos: tok.bosId !== null });
  }
  const p = req.prompt;
  if (Array.isArray(p)) {
    if (p.length === 0 || p.some((t) => !Number.isInteger(t) || t < 0 || t >= model.config.vocabSize)) {
      throw new BadRequest(`'prompt' token ids must be integers in 0..${model.config.vocabSize - 1}`);
    }
    return p;
  }
  if (typeof p !== 'string') throw new BadRequest("'prompt' must be a string or an array of token ids");
  return tok.encode(p, { bos: tok.bosId !== null });
}

export interface Server {
  url: string;
  close(): Promise<void>;
}

/** Starts the server; resolves once it listens. */
export async function startServer(model: Model, options: Partial<ServeOptions> = {}): Promise<Server> {
  const o = { ...serveDefaults, ...options };
  const id = o.modelId ?? model.name;
  let queue: Promise<unknown> = Promise.resolve();
  let counter = 0;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      return send(200, { object: 'list', data: [{ id, object: 'model', created: 0, owned_by: 'llmcbench-ts' }] });
    }
    const chat = url.pathname === '/v1/chat/completions';
    if (req.method !== 'POST' || !(chat || url.pathname === '/v1/completions')) {
      return send(404, { error: { message: `no route ${req.method} ${url.pathname}`, type: 'invalid_request_error' } });
    }
    let body: CompletionRequest;
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch (e) {
      return send(400, { error: { message: `invalid JSON body: ${(e as Error).message}`, type: 'invalid_request_error' } });
    }
    let prompt: number[];
    let maxTokens: number;
    try {
      if (body.model !== undefined && body.model !== id) throw new BadRequest(`model '${body.model}' is not served (this server serves '${id}')`);
      prompt = promptOf(model, body, chat);
      maxTokens = body.max_completion_tokens ?? body.max_tokens ?? o.maxTokensDefault;
      if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new BadRequest(`max_tokens must be a positive integer, got ${maxTokens}`);
      if (prompt.length + maxTokens > model.config.maxPositions) {
        throw new BadRequest(`prompt (${prompt.length}) + max_tokens (${maxTokens}) exceed the model's context (${model.config.maxPositions})`);
      }
    } catch (e) {
      if (e instanceof BadRequest) return send(400, { error: { message: e.message, type: 'invalid_request_error' } });
      throw e;
    }
    const reqId = `${chat ? 'chatcmpl' : 'cmpl'}-${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    const object = chat ? 'chat.completion' : 'text_completion';
    const temperature = body.temperature ?? 1;
    const stream = Boolean(body.stream);
    const includeUsage = Boolean(body.stream_options?.include_usage);
    const ids: number[] = [];
    let sent = ''; // text streamed so far (incremental detokenization)
    const event = (x: unknown) => res.write(`data: ${JSON.stringify(x)}\n\n`);
    const chunk = (text: string, finish: string | null) =>
      event({
        id: reqId, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: id,
        choices: [chat ? { index: 0, delta: finish ? {} : { content: text }, finish_reason: finish } : { index: 0, text, finish_reason: finish }],
      });
    if (stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      if (chat) event({ id: reqId, object: 'chat.completion.chunk', created, model: id, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    }
    // One request at a time: the model and the backend are shared.
    const job = queue.then(() =>
      generate(model, prompt, {
        maxNewTokens: maxTokens,
        greedy: temperature === 0,
        temperature: temperature === 0 ? 1 : temperature,
        seed: body.seed ?? 0,
        stopAtEos: !body.ignore_eos,
        onToken: (t) => {
          ids.push(t);
          if (!stream) return;
          // One chunk per token; text that ends inside a multi-byte character waits for the next token.
          const text = model.tokenizer.decode(ids);
          const delta = text.endsWith('\uFFFD') ? '' : text.slice(sent.length);
          if (!text.endsWith('\uFFFD')) sent = text;
          chunk(delta, null);
        },
      }),
    );
    queue = job.catch(() => undefined);
    let out: number[];
    try {
      out = await job;
    } catch (e) {
      if (stream) {
        event({ error: { message: (e as Error).message, type: 'server_error' } });
        return res.end();
      }
      return send(500, { error: { message: (e as Error).message, type: 'server_error' } });
    }
    const eos = model.config.eosTokenId;
    const finish = out.length < maxTokens || (eos !== null && out[out.length - 1] === eos && !body.ignore_eos) ? 'stop' : 'length';
    const usage = { prompt_tokens: prompt.length, completion_tokens: out.length, total_tokens: prompt.length + out.length };
    if (stream) {
      chunk('', finish);
      if (includeUsage) event({ id: reqId, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: id, choices: [], usage });
      res.write('data: [DONE]\n\n');
      return res.end();
    }
    const text = model.tokenizer.decode(out);
    send(200, {
      id: reqId, object, created, model: id,
      choices: [chat ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: finish } : { index: 0, text, finish_reason: finish }],
      usage,
    });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: (e as Error).message, type: 'server_error' } }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${o.host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function parseArgs(argv: string[]): Record<string, string> {
  const a: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--')) throw new Error(`unexpected argument '${k}' (options are --name value)`);
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`option ${k} needs a value`);
    a[k.slice(2)] = v;
    i++;
  }
  return a;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const known = ['model', 'tokenizer', 'host', 'port', 'backend', 'id'];
  for (const k of Object.keys(a)) if (!known.includes(k)) throw new Error(`unknown option --${k} (known: ${known.map((x) => `--${x}`).join(', ')})`);
  const rt = await initRuntime({ backend: parseBackend(a.backend ?? process.env.LLMCB_BACKEND ?? 'auto') });
  const model = await loadModel(a.model ?? 'models/stories260K/stories260K.bin', { tokenizer: a.tokenizer });
  const port = a.port === undefined ? serveDefaults.port : Number(a.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${a.port}`);
  const server = await startServer(model, { host: a.host ?? serveDefaults.host, port, modelId: a.id ?? null });
  console.log(`serving ${model.name} (${rt.backend}, ${rt.device}) at ${server.url}/v1`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (isMainModule(import.meta.url)) {
  main().catch((e) => {
    console.error(`serve: ${(e as Error).message}`);
    process.exit(1);
  });
}
