// Engine 'openai-http': a benchmark client for any OpenAI-compatible server (vLLM, TensorRT-LLM's
// trtllm-serve, MLC-LLM's serve, llama.cpp's server, the kit's scripts/serve.ts). It sends
// `concurrency` streaming requests at once and times each stream's server-sent events: time to
// first token, inter-token latency, prefill/decode rates and overall throughput. The server runs
// its own copy of the model: rows name the server and its model id, never the kit's weights.
import {
  EngineNotRun, checkSettings, promptIds, summarize, timingOf, warmThenTime,
  type BenchSettings, type Engine, type EngineInput, type EngineMeasurement, type Prepared, type RunTiming,
} from './types';

export interface OpenAiHttpOptions {
  baseUrl: string; // server root, e.g. http://127.0.0.1:8000 (the client adds /v1/...)
  engine: string; // name for rows: 'vllm', 'tensorrt-llm', 'mlc-llm', 'llama.cpp-server', 'kit-serve'
  model: string | null; // model id to request (null: the first one /v1/models lists)
  endpoint: 'completions' | 'chat'; // /v1/completions (prompt as token ids) or /v1/chat/completions (text)
  apiKey: string | null; // bearer token, if the server wants one
  timeoutMs: number; // per request, and for the reachability check
  promptVocab: number | null; // prompt ids are drawn from [3, promptVocab) (null: the kit model's vocabulary)
}

export const openAiHttpDefaults: OpenAiHttpOptions = {
  baseUrl: 'http://127.0.0.1:8000', // vLLM's and trtllm-serve's default port
  engine: 'openai-http', // generic name; pass the server's
  model: null, // whatever the server serves
  endpoint: 'completions', // token-exact prompts
  apiKey: null, // local servers need none
  timeoutMs: 120_000, // generous for first-request compilation
  promptVocab: null, // the kit model's vocabulary
};

interface Stream {
  times: number[]; // ms from the request start to each content chunk
  usageTokens: number | null; // usage.completion_tokens when the server sends it
}

export interface HttpPrepared extends Prepared {
  vocab: number;
}

export class OpenAiHttpEngine implements Engine<HttpPrepared> {
  readonly name: string;
  readonly device: string;

  private constructor(
    readonly opts: OpenAiHttpOptions,
    readonly modelId: string,
  ) {
    this.name = opts.engine;
    this.device = `server ${opts.baseUrl} (model ${modelId})`;
  }

  /** Connects (GET /v1/models); an unreachable server or an unknown model is EngineNotRun. */
  static async create(options: Partial<OpenAiHttpOptions> = {}): Promise<OpenAiHttpEngine> {
    const o = { ...openAiHttpDefaults, ...options };
    let models: string[];
    try {
      const res = await fetch(`${o.baseUrl.replace(/\/$/, '')}/v1/models`, { headers: headers(o), signal: AbortSignal.timeout(Math.min(o.timeoutMs, 10_000)) });
      if (!res.ok) throw new Error(`GET /v1/models: HTTP ${res.status}`);
      const body = (await res.json()) as { data?: { id: string }[] };
      models = (body.data ?? []).map((m) => m.id);
    } catch (e) {
      throw new EngineNotRun(o.engine, `no server at ${o.baseUrl}: ${(e as Error).message}`);
    }
    const id = o.model ?? models[0];
    if (!id) throw new EngineNotRun(o.engine, `server ${o.baseUrl} lists no model`);
    if (o.model && models.length && !models.includes(o.model)) throw new EngineNotRun(o.engine, `server ${o.baseUrl} does not serve '${o.model}' (it serves ${models.join(', ')})`);
    return new OpenAiHttpEngine(o, id);
  }

  async prepare(input: EngineInput): Promise<HttpPrepared> {
    const vocab = this.opts.promptVocab ?? input.model.config.vocabSize;
    return {
      vocab,
      format: `served by ${this.opts.engine} (${this.modelId})`,
      notes: [`server ${this.opts.baseUrl} model ${this.modelId}, ${this.opts.endpoint} endpoint, streaming`],
      dispose: async () => undefined,
    };
  }

  /** settings.batch concurrent streaming requests per run. */
  async measure(p: HttpPrepared, settings: BenchSettings): Promise<EngineMeasurement> {
    checkSettings(settings);
    const { promptTokens: P, newTokens: N, batch: B } = settings;
    const runs = await warmThenTime(settings, async (): Promise<RunTiming> => {
      const t0 = performance.now();
      const streams = await Promise.all(Array.from({ length: B }, (_, b) => this.request(promptIds(P, p.vocab, settings.seed + b), N, t0)));
      for (const s of streams) {
        if (s.usageTokens !== null && s.usageTokens !== s.times.length) {
          p.notes.push(`usage reported ${s.usageTokens} tokens in ${s.times.length} chunks`);
        }
      }
      // Tokens as the server's usage counts them where it reports them (a chunk may carry several).
      return { ...timingOf(streams.map((s) => s.times)), tokens: streams.map((s) => s.usageTokens ?? s.times.length) };
    });
    return summarize(runs, settings, null, 'not measurable over HTTP', [...new Set(p.notes)]);
  }

  /** One streaming request; returns each content chunk's arrival time (ms since t0). */
  private async request(prompt: number[], maxTokens: number, t0: number): Promise<Stream> {
    const o = this.opts;
    const common = {
      model: this.modelId,
      max_tokens: maxTokens,
      min_tokens: maxTokens, // vLLM: no early stop
      ignore_eos: true, // vLLM, the kit's server, llama.cpp-server (as ignore_eos)
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    };
    const body =
      o.endpoint === 'completions'
        ? { ...common, prompt }
        : { ...common, messages: [{ role: 'user', content: prompt.map((t) => `t${t}`).join(' ') }] };
    const url = `${o.baseUrl.replace(/\/$/, '')}/v1/${o.endpoint === 'completions' ? 'completions' : 'chat/completions'}`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...headers(o), 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    if (!res.ok || !res.body) throw new Error(`${o.engine}: POST ${url}: HTTP ${res.status} ${await res.text().catch(() => '')}`);
    const stream: Stream = { times: [], usageTokens: null };
    await readSse(res.body, (data) => {
      if (data === '[DONE]') return;
      let ev: { choices?: { text?: string; delta?: { content?: string } }[]; usage?: { completion_tokens?: number } | null };
      try {
        ev = JSON.parse(data);
      } catch {
        throw new Error(`${o.engine}: not a JSON event: ${data.slice(0, 200)}`);
      }
      const c = ev.choices?.[0];
      // A chunk carrying a token: completions have 'text', chat has a delta (role-only deltas carry none).
      if (c && (c.text !== undefined || c.delta?.content !== undefined)) stream.times.push(performance.now() - t0);
      if (ev.usage?.completion_tokens !== undefined) stream.usageTokens = ev.usage.completion_tokens;
    });
    return stream;
  }

  async dispose(): Promise<void> {
    // Connections are per request.
  }
}

function headers(o: OpenAiHttpOptions): Record<string, string> {
  return o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};
}

/** Reads server-sent events, calling onData with each event's data (multi-line data joined by \n). */
export async function readSse(body: ReadableStream<Uint8Array>, onData: (data: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  const line = (l: string) => {
    if (l === '') {
      if (data.length) onData(data.join('\n'));
      data = [];
    } else if (l.startsWith('data:')) data.push(l.slice(5).replace(/^ /, ''));
  };
  const reader = body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.search(/\r?\n/)) >= 0) {
      line(buf.slice(0, i));
      buf = buf.slice(buf[i] === '\r' ? i + 2 : i + 1);
    }
  }
  if (buf) line(buf);
  line('');
}
