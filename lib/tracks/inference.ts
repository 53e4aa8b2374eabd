// Track 4 (inference consumption): peak memory while generating (fixed prompt, batch, new tokens),
// stored size on disk in the packed format, MACs per token at a stated sequence length.
import { methodKind } from '../methods/index';
import { measureMacs, measureStoredSize, meterGeneration, QUANT_MAC_CONVENTIONS } from '../efficiency/meters';
import type { Cell } from '../matrix';
import { metricFields } from '../metrics/catalogue';
import type { ResultRow } from '../results';
import { cellRow, notRunRows, type Subject, type TrackEnv } from './common';

export const TRACK4_METRICS = [metricFields(4, 'peak_memory_bytes'), metricFields(4, 'model_size_bytes'), metricFields(4, 'macs_per_token')];

export async function inferenceCell(env: TrackEnv, cell: Cell, s: Subject): Promise<ResultRow[]> {
  const o = env.matrix.inference;
  const rows: ResultRow[] = [];
  const g = await meterGeneration(s.model, { promptTokens: o.promptTokens, batch: o.batch, newTokens: o.newTokens, seed: 0 }, s.compress?.actQuant ?? null);
  const pool = g.gpuPoolHighWaterBytes === null ? '' : `; WebGPU pool high-water ${g.gpuPoolHighWaterBytes} B (process lifetime)`;
  rows.push(
    cellRow(env, cell, s, {
      ...TRACK4_METRICS[0], value: g.peakBytes, seqlen: o.promptTokens + o.newTokens, n: g.tokens, duration_s: g.ms / 1000,
      note: `prompt ${o.promptTokens} tokens, batch ${o.batch}, ${o.newTokens} new tokens, ${g.path}; live tfjs tensor bytes (weights held as fp32: ${g.weightBytes} B)${pool}`,
    }),
  );
  try {
    const size = await measureStoredSize(s.model, methodKind(s.method.method), s.compress?.config ?? s.method.config, s.compress);
    rows.push(cellRow(env, cell, s, { ...TRACK4_METRICS[1], value: size.bytes, note: size.format }));
  } catch (e) {
    rows.push(...notRunRows(env, cell, [TRACK4_METRICS[1]], `stored size: ${(e as Error).message}`));
  }
  const macs = await measureMacs(s.model, s.compress, o.macSeqlen, o.quantMacs);
  rows.push(
    cellRow(env, cell, s, {
      ...TRACK4_METRICS[2], value: macs.perToken, seqlen: macs.seqlen,
      note: `per token at seqlen ${macs.seqlen} (full attention, head included, zeros skipped); quantized MACs: ${o.quantMacs} = ${QUANT_MAC_CONVENTIONS[o.quantMacs]}; architecture count ${macs.denseTotal / macs.seqlen} per token`,
    }),
  );
  return rows;
}
