// The kit's one seeded PRNG (mulberry32): host-side, backend independent, the same stream for the
// same seed everywhere. Used for subsampling, bootstrap, sampling noise, benchmark data, random
// models and prompts. (lib/train/rng.ts keeps its own serializable generator for resumable runs.)

const STEP = 0x6d2b79f5;

/** mulberry32's output for the state a (already stepped). */
function mix(a: number): number {
  let t = Math.imul(a ^ (a >>> 15), a | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Uniform numbers in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + STEP) >>> 0;
    return mix(a);
  };
}

/**
 * Writes the next out.length numbers of the stream at `state` (a seed, or what the last call
 * returned) into out and returns the new state: the numbers mulberry32(state) would give call by
 * call, several times faster in bulk (the state stays a local, not a closure's boxed number).
 */
export function mulberry32Fill(out: Float64Array, state: number): number {
  let a = state >>> 0;
  for (let i = 0; i < out.length; i++) {
    a = (a + STEP) >>> 0;
    out[i] = mix(a);
  }
  return a;
}
