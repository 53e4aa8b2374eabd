// Shared by the kernel tests: start webgpu when this machine has an adapter, else say why not.
import { initRuntime } from '../lib/runtime';

/** null when the webgpu backend is running; otherwise the reason the GPU tests skip (also warned). */
export async function webgpuAdapterReason(): Promise<string | null> {
  try {
    await initRuntime({ backend: 'webgpu' });
    return null;
  } catch (e) {
    const reason = `WebGPU kernel tests skipped: ${(e as Error).message}`;
    console.warn(reason);
    return reason;
  }
}
