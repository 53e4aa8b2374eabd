// The kit's one seeded PRNG (mulberry32): host-side, backend independent, the same stream for the
// same seed everywhere. Used for subsampling, bootstrap, sampling noise, benchmark data, random
// models and prompts. (lib/train/rng.ts keeps its own serializable generator for resumable runs.)

/** Uniform numbers in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
