// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {str: str}}, then the data,
// offsets relative to its start. The reader validates every header field against the file before
// anything is read (so a lying or truncated file fails naming the file and tensor) and reads
// tensors one at a time, upcasting F16/BF16 to fp32. The writer streams fp32 (or F16/BF16) data.
// The kit's packed and sparse files (U8, I32 parts) are read and written here too, as bytes; the
// half-precision codec (f16Bits, f16Value) also serves the GGUF writer.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeFileAtomicAsync } from '../results';
import type { TensorSource } from './weights';

export type SafeDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<SafeDtype, number> = { F32: 4, F16: 2, BF16: 2 };

export interface SafetensorsEntry<D extends string = SafeDtype> {
  name: string;
  dtype: D;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader<D extends string = SafeDtype> {
  file: string;
  entries: SafetensorsEntry<D>[];
  metadata: Record<string, string>;
}

/** Header lengths beyond this are treated as corrupt (real headers are well under 10 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Largest single read (Node's readSync takes at most 2 GiB - 1 per call). */
const READ_CHUNK = 1 << 30;

/** The JSON object of a safetensors header (length checked against the file), where the data starts, and the file's size. */
function readHeaderJson(file: string): { json: Record<string, unknown>; dataStart: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new Error(`cannot open safetensors file ${file}: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new Error(`${file}: truncated safetensors file (${size} bytes, no header length)`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (n > MAX_HEADER_BYTES || n > size - 8) {
      throw new Error(`${file}: header length ${n} exceeds the file (${size} bytes): truncated or not a safetensors file`);
    }
    const hb = Buffer.alloc(n);
    readSync(fd, hb, 0, n, 8);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(hb.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${file}: header is not valid JSON: ${(e as Error).message}`);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${file}: header is not a JSON object`);
    return { json, dataStart: 8 + n, size };
  } finally {
    closeSync(fd);
  }
}

/** The __metadata__ of a header, checked to be what the format says: an object of strings (absent: {}). */
function headerMetadata(json: Record<string, unknown>, file: string): Record<string, string> {
  const m = json.__metadata__ ?? {};
  if (typeof m !== 'object' || Array.isArray(m) || !Object.values(m).every((v) => typeof v === 'string')) {
    throw new Error(`${file}: __metadata__ must be an object of strings, got ${JSON.stringify(m).slice(0, 80)}`);
  }
  return m as Record<string, string>;
}

/** The __metadata__ of a safetensors file, read from its header alone (its tensors, of any dtype, are not checked). */
export function readSafetensorsMetadata(file: string): Record<string, string> {
  return headerMetadata(readHeaderJson(file).json, file);
}

/**
 * Reads and validates a safetensors header against the file's size. `dtypes` lists the dtypes
 * accepted, with their bytes per value: by default F32, F16 and BF16 (the ones readTensor reads);
 * the kit's packed and sparse files pass their own (U8, I32…) and read them with readTensorBytes.
 */
export function readSafetensorsHeader<D extends string = SafeDtype>(
  file: string,
  dtypes: Record<D, number> = DTYPE_BYTES as Record<D, number>,
): SafetensorsHeader<D> {
  const { json, dataStart, size } = readHeaderJson(file);
  const dataSize = size - dataStart;
  const entries: SafetensorsEntry<D>[] = [];
  const metadata = headerMetadata(json, file);
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${file}: tensor '${name}'`;
    if (!e || typeof e !== 'object') throw new Error(`${where}: header entry is not an object`);
    if (typeof e.dtype !== 'string' || !Object.hasOwn(dtypes, e.dtype)) {
      throw new Error(`${where}: unsupported dtype ${JSON.stringify(e.dtype)} (supported: ${Object.keys(dtypes).join(', ')})`);
    }
    const dtype = e.dtype as D;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`${where}: bad shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) {
      throw new Error(`${where}: bad data_offsets ${JSON.stringify(off)}`);
    }
    const [b, end] = off as [number, number];
    const want = shape.reduce((a, d) => a * d, 1) * dtypes[dtype];
    if (end - b !== want) {
      throw new Error(`${where}: data_offsets span ${end - b} bytes but ${dtype} [${shape.join(', ')}] needs ${want}`);
    }
    if (end > dataSize) {
      throw new Error(`${where}: data ends at byte ${dataStart + end} but the file has ${size} bytes (truncated file)`);
    }
    entries.push({ name, dtype, shape, begin: dataStart + b, end: dataStart + end });
  }
  // Tensors may not overlap (the format also forbids holes; we only need non-overlap to be safe).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end && sorted[i].end > sorted[i].begin) {
      throw new Error(`${file}: tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap in the data section`);
    }
  }
  return { file, entries, metadata };
}

/** The bytes of one tensor, as stored, in a buffer of their own. */
export function readTensorBytes(file: string, e: SafetensorsEntry<string>): Uint8Array {
  const bytes = e.end - e.begin;
  const raw = new Uint8Array(bytes);
  const fd = openSync(file, 'r');
  try {
    for (let done = 0; done < bytes; ) {
      const got = readSync(fd, raw, done, Math.min(READ_CHUNK, bytes - done), e.begin + done);
      if (got <= 0) throw new Error(`${file}: tensor '${e.name}': unexpected end of file`);
      done += got;
    }
  } finally {
    closeSync(fd);
  }
  return raw;
}

/** Reads one tensor from its file as fp32. */
export function readTensor(file: string, e: SafetensorsEntry): Float32Array {
  const raw = readTensorBytes(file, e);
  if (e.dtype === 'F32') return new Float32Array(raw.buffer, 0, raw.length / 4);
  const half = new Uint16Array(raw.buffer, 0, raw.length / 2);
  return e.dtype === 'BF16' ? bf16ToF32(half) : f16ToF32(half);
}

export function bf16ToF32(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}

export function f16ToF32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = f16Value(h[i]);
  return out;
}

/** fp32 → bf16 with round-to-nearest-even (NaN stays NaN). */
export function f32ToBf16(f: Float32Array): Uint16Array {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** fp32 → IEEE half with round-to-nearest-even, overflow to ±Inf, subnormals kept. */
export function f32ToF16(f: Float32Array): Uint16Array {
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f16Bits(f[i]);
  return out;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** IEEE binary16 bits of a float, rounded to nearest even (as the F16C instruction / ggml on x86), overflow to ±Inf, subnormals kept. */
export function f16Bits(v: number): number {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    // subnormal half: value = m * 2^-24
    if (e < -10) return sign;
    mant |= 0x800000; // implicit 1
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is still correct
  return sign | h;
}

/** The value of IEEE binary16 bits. */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24; // subnormal
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** The tensors of one safetensors file as sources for the loader. */
export function safetensorsSources(file: string): TensorSource[] {
  const h = readSafetensorsHeader(file);
  return h.entries.map((e) => ({
    name: e.name,
    shape: e.shape,
    origin: file,
    read: () => readTensor(file, e),
  }));
}

/**
 * The tensors of an HF directory: model.safetensors, or model.safetensors.index.json and its
 * shards (every shard checked present and every indexed tensor checked inside its shard).
 */
export function openSafetensorsDir(dir: string): { sources: TensorSource[]; what: string } {
  const index = path.join(dir, 'model.safetensors.index.json');
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    } catch (e) {
      throw new Error(`${index}: invalid index: ${(e as Error).message}`);
    }
    if (!map || typeof map !== 'object') throw new Error(`${index}: no weight_map`);
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(map)) {
      if (!byShard.has(shard)) byShard.set(shard, []);
      byShard.get(shard)!.push(name);
    }
    const sources: TensorSource[] = [];
    for (const [shard, names] of byShard) {
      const file = path.join(dir, shard);
      if (!existsSync(file)) {
        throw new Error(`${index}: shard ${file} is missing (it holds '${names[0]}'${names.length > 1 ? ` and ${names.length - 1} more` : ''})`);
      }
      const inShard = new Map(safetensorsSources(file).map((s) => [s.name, s]));
      for (const name of names) {
        const s = inShard.get(name);
        if (!s) throw new Error(`${file}: tensor '${name}' is listed in ${path.basename(index)} but not in this shard`);
        sources.push(s);
      }
    }
    return { sources, what: index };
  }
  if (existsSync(single)) return { sources: safetensorsSources(single), what: single };
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

/** A tensor to write: shape and its fp32 data as consecutive chunks (row blocks). */
export interface WriteTensor {
  name: string;
  shape: number[];
  chunks(): Float32Array[];
  /** Stored dtype (default F32). */
  dtype?: SafeDtype;
}

/** The bytes of a typed array (a view of its buffer, not a copy). */
export function byteView(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function encodeChunk(c: Float32Array, dtype: SafeDtype): Uint8Array {
  if (dtype === 'F32') return byteView(c);
  const h = dtype === 'F16' ? f32ToF16(c) : f32ToBf16(c);
  return new Uint8Array(h.buffer);
}

/** A tensor whose chunks may come from an asynchronous (device) read. */
export interface AsyncWriteTensor extends Omit<WriteTensor, 'chunks'> {
  chunks(): Float32Array[] | Promise<Float32Array[]>;
}

/** One tensor's place in a safetensors header: its `bytes` of data follow the previous tensor's. */
interface HeaderEntry {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
}

/** The 8-byte length + JSON header of a safetensors file (data 8-byte aligned; __metadata__ only when not empty). */
function safetensorsHeader(tensors: HeaderEntry[], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes] };
    off += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data starts 8-byte aligned
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([len, hb]);
}

/** safetensorsHeader for tensors given by shape and dtype (default F32). */
function headerBytes(tensors: { name: string; shape: number[]; dtype?: SafeDtype }[], metadata: Record<string, string>): Buffer {
  return safetensorsHeader(
    tensors.map((t) => {
      const dtype = t.dtype ?? 'F32';
      return { name: t.name, dtype, shape: t.shape, bytes: t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[dtype] };
    }),
    metadata,
  );
}

/** Writes all of b at the file position, in pieces of at most READ_CHUNK bytes. */
function writeBytes(fd: number, b: Uint8Array): void {
  for (let o = 0; o < b.length; o += READ_CHUNK) writeSync(fd, b, o, Math.min(READ_CHUNK, b.length - o));
}

/** Writes one tensor's chunks at the file position; checks the value count against the shape. */
function writeChunks(fd: number, file: string, t: { name: string; shape: number[]; dtype?: SafeDtype }, chunks: Float32Array[]): void {
  const dtype = t.dtype ?? 'F32';
  const want = t.shape.reduce((a, d) => a * d, 1);
  let got = 0;
  for (const c of chunks) {
    got += c.length;
    writeBytes(fd, encodeChunk(c, dtype));
  }
  if (got !== want) throw new Error(`${file}: tensor '${t.name}' supplied ${got} values for shape [${t.shape.join(', ')}] (${want})`);
}

/** Writes one safetensors file (through a temp file and rename, so readers never see half a file). */
export function writeSafetensors(file: string, tensors: WriteTensor[], metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, (fd) => {
    writeSync(fd, headerBytes(tensors, metadata));
    for (const t of tensors) writeChunks(fd, file, t, t.chunks());
  });
}

/** writeSafetensors for chunks read asynchronously (tensors on WebGPU), one tensor at a time. */
export async function writeSafetensorsAsync(file: string, tensors: AsyncWriteTensor[], metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomicAsync(file, async (fd) => {
    writeSync(fd, headerBytes(tensors, metadata));
    for (const t of tensors) writeChunks(fd, file, t, await t.chunks());
  });
}

/** A tensor already encoded as the bytes of its dtype (any safetensors dtype: F32, U8, I32…). */
export interface RawWriteTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** writeSafetensors for tensors given as bytes (the caller checks them against dtype and shape); returns the bytes of tensor data. */
export function writeSafetensorsRaw(file: string, tensors: RawWriteTensor[], metadata: Record<string, string> = {}): number {
  writeFileAtomic(file, (fd) => {
    writeSync(fd, safetensorsHeader(tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.data.byteLength })), metadata));
    for (const t of tensors) writeBytes(fd, t.data);
  });
  return tensors.reduce((a, t) => a + t.data.byteLength, 0);
}

/** Writes model.safetensors, or model-0000i-of-0000n.safetensors + index when above maxShardBytes. */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: AsyncWriteTensor[],
  opts: { maxShardBytes: number; metadata?: Record<string, string> },
): Promise<string[]> {
  const shards: AsyncWriteTensor[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype ?? 'F32'];
    if (size > 0 && size + bytes > opts.maxShardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += bytes;
  }
  if (shards.length === 1) {
    await writeSafetensorsAsync(path.join(dir, 'model.safetensors'), tensors, opts.metadata);
    return ['model.safetensors'];
  }
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const names: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < shards.length; i++) {
    const ts = shards[i];
    const name = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    await writeSafetensorsAsync(path.join(dir, name), ts, opts.metadata);
    names.push(name);
    for (const t of ts) {
      weightMap[t.name] = name;
      total += t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype ?? 'F32'];
    }
  }
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  writeFileAtomic(path.join(dir, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`);
  return names;
}
