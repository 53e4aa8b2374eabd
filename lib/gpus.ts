// The GPUs of one host and how a process is pinned to one of them (run.ts --gpus: lib/shard-pool.ts).
//
// The kit's GPU path is Dawn (the `webgpu` package) on Vulkan. Dawn takes the first adapter whose
// name contains its `adapter=` flag, so identical GPUs cannot be told apart there, and its
// adapter.info has no PCI address or UUID. CUDA_VISIBLE_DEVICES does not reach Vulkan, and the
// Vulkan loader's VK_LOADER_DEVICE_SELECT (newer than the bundled 1.3.239 loader anyway) selects by
// vendor:device id, the same on identical GPUs. What tells them apart is the PCI address: Mesa's
// device-select layer (VK_LAYER_MESA_device_select, an implicit layer that comes with
// mesa-vulkan-drivers; it works over any driver that has VK_EXT_pci_bus_info, NVIDIA's included)
// puts the device DRI_PRIME=pci-DDDD_BB_DD_F names first, and with
// MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 shows the process that device alone.
//
// So a worker for GPU k gets k's PCI address (from nvidia-smi) in those two variables, its UUID in
// CUDA_VISIBLE_DEVICES (the CUDA anchors: torch, llama.cpp's CUDA build), and LLMCB_GPU /
// LLMCB_GPUS. A host without the layer can be given a copy (scripts/gpu-pin-layer.sh DIR, then
// LLMCB_DEVICE_SELECT_LAYER=DIR: the loader loads it as an explicit layer). A process started so that starts webgpu checks the pin (checkPinnedAdapter): with
// several workers, Dawn must see one hardware adapter; more means the layer is absent and the
// workers would all share one GPU, an error that says so.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { numberFlag } from './cli';

/** One GPU a worker can be pinned to. */
export interface GpuSlot {
  index: number; // nvidia-smi's index (or the worker's number when no GPU is listed)
  uuid: string | null; // e.g. GPU-8f6c…; null when unknown
  pciBusId: string | null; // e.g. 00000000:18:00.0; null when unknown
  name: string | null; // e.g. NVIDIA H200
}

/** The NVIDIA GPUs nvidia-smi lists (in its index order), or null when nvidia-smi does not answer. */
export function listNvidiaGpus(): GpuSlot[] | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=index,uuid,pci.bus_id,name', '--format=csv,noheader'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0 || !r.stdout) return null;
  return parseNvidiaSmi(r.stdout);
}

/** The rows of `nvidia-smi --query-gpu=index,uuid,pci.bus_id,name --format=csv,noheader`. */
export function parseNvidiaSmi(text: string): GpuSlot[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [index, uuid, pciBusId, ...name] = l.split(',').map((f) => f.trim());
      if (!/^\d+$/.test(index) || !/^[0-9a-f]+:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i.test(pciBusId ?? '')) throw new Error(`nvidia-smi: cannot read the line '${l}'`);
      return { index: Number(index), uuid: uuid || null, pciBusId, name: name.join(',') || null };
    });
}

/** The GPU indices of `--gpus N` (0..N-1) or `--devices I,J` (those); give one of the two. */
export function parseDevices(gpus: string | undefined, devices: string | undefined): number[] {
  if ((gpus === undefined) === (devices === undefined)) throw new Error('give one of --gpus N and --devices I,J');
  if (devices !== undefined) return devices.split(',').map((d) => numberFlag('devices', d, { integer: true, min: 0 }));
  return [...Array(numberFlag('gpus', gpus!, { integer: true, min: 1 })).keys()];
}

/**
 * The GPUs of `--gpus N` (the first N) or `--devices 0,2` (those indices): the listed GPUs when
 * nvidia-smi answers (asking for one it does not list is an error), else bare worker slots (the
 * wasm/cpu backends: N workers on the CPU; no pin).
 */
export function gpuSlots(devices: number[], listed: GpuSlot[] | null): GpuSlot[] {
  if (devices.length === 0) throw new Error('--gpus/--devices: no GPU given');
  if (new Set(devices).size !== devices.length) throw new Error(`--devices ${devices.join(',')}: a GPU is named twice`);
  if (listed === null) return devices.map((index) => ({ index, uuid: null, pciBusId: null, name: null }));
  return devices.map((d) => {
    const g = listed.find((s) => s.index === d);
    if (!g) throw new Error(`GPU ${d} is not on this host: nvidia-smi lists ${listed.length ? listed.map((s) => `${s.index} (${s.name})`).join(', ') : 'none'}`);
    return g;
  });
}

/** A PCI address as Vulkan's VK_EXT_pci_bus_info and Mesa print it: 00000000:18:00.0 -> 0000:18:00.0. */
export function pciAddress(busId: string): string {
  const m = /^([0-9a-f]+):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(busId);
  if (!m) throw new Error(`'${busId}' is not a PCI address (domain:bus:device.function)`);
  return `${m[1].slice(-4).padStart(4, '0')}:${m[2]}:${m[3]}.${m[4]}`.toLowerCase();
}

/** Mesa's DRI_PRIME tag of a PCI address: 00000000:18:00.0 -> pci-0000_18_00_0. */
export const driPrimeTag = (busId: string) => `pci-${pciAddress(busId).replace(/[:.]/g, '_')}`;

/** Mesa's device-select layer: its name, and its manifest's file name (scripts/gpu-pin-layer.sh). */
const LAYER = 'VK_LAYER_MESA_device_select';
const LAYER_MANIFEST = 'VkLayer_MESA_device_select.json';

/**
 * The environment that pins a worker's processes (and the cell processes they start) to one GPU.
 * With LLMCB_DEVICE_SELECT_LAYER=DIR (a copy of the layer made by scripts/gpu-pin-layer.sh, for a
 * host that lacks it), the Vulkan loader also loads the layer from DIR, and its libraries from DIR/lib.
 */
export function pinEnv(slot: GpuSlot, workers: number, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const pin: Record<string, string> = { LLMCB_GPU: String(slot.index), LLMCB_GPUS: String(workers) };
  if (slot.uuid) pin.CUDA_VISIBLE_DEVICES = slot.uuid;
  if (!slot.pciBusId) return pin;
  pin.DRI_PRIME = driPrimeTag(slot.pciBusId);
  pin.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE = '1';
  const carried = env.LLMCB_DEVICE_SELECT_LAYER;
  if (carried) {
    const dir = path.resolve(carried);
    if (!fs.existsSync(path.join(dir, LAYER_MANIFEST))) throw new Error(`LLMCB_DEVICE_SELECT_LAYER=${carried}: no ${LAYER_MANIFEST} there (make the folder with scripts/gpu-pin-layer.sh)`);
    const join = (name: string, value: string, sep: string) => (env[name] ? `${env[name]}${sep}${value}` : value);
    pin.VK_ADD_LAYER_PATH = join('VK_ADD_LAYER_PATH', dir, ':');
    pin.VK_LOADER_LAYERS_ENABLE = join('VK_LOADER_LAYERS_ENABLE', LAYER, ',');
    pin.LD_LIBRARY_PATH = join('LD_LIBRARY_PATH', path.join(dir, 'lib'), ':');
  }
  return pin;
}

/** One line naming a slot, for logs: "GPU 1 (NVIDIA H200, 00000000:18:00.0, GPU-8f6c…)". */
export const slotLabel = (s: GpuSlot) => `GPU ${s.index}${s.name || s.pciBusId ? ` (${[s.name, s.pciBusId, s.uuid].filter(Boolean).join(', ')})` : ''}`;

/**
 * The adapters Dawn sees, by name: asked for an adapter name no adapter has, dawn.node rejects
 * with the list of them all ("Available adapters: * backend: 'vulkan', name: '…'").
 */
export async function dawnAdapterNames(create: (flags: string[]) => GPU): Promise<string[]> {
  const gpu = create(['adapter=\u0001no adapter has this name']);
  try {
    await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return [...String((e as Error).message ?? e).matchAll(/^ \* backend: '[^']*', name: '(.*)'$/gm)].map((m) => m[1]);
  }
  return []; // no adapter at all: requestAdapter resolves null
}

/** A pin that shows the process more than one adapter did not take: every worker would get the first GPU. */
function unpinned(gpu: string, pin: string, names: string[]): Error {
  return new Error(
    `the pin to GPU ${gpu} (${pin}) did not take: Dawn sees ${names.length} adapters (${names.join('; ')}), so the workers would share one GPU. ` +
      `Pinning needs Mesa's device-select Vulkan layer (VK_LAYER_MESA_device_select, in mesa-vulkan-drivers) and the GPUs' PCI addresses (nvidia-smi)`,
  );
}

/**
 * In a process that LLMCB_GPU pins (a worker of run.ts --gpus, or a cell process it starts), the
 * line that says which adapter it got. Throws when several workers share the host and Dawn sees
 * more than one adapter (the pin did not take).
 */
export async function checkPinnedAdapter(info: GPUAdapterInfo, create: (flags: string[]) => GPU, env = process.env): Promise<string | null> {
  if (env.LLMCB_GPU === undefined) return null;
  const names = await dawnAdapterNames(create);
  const pin = env.DRI_PRIME ? `DRI_PRIME=${env.DRI_PRIME}` : 'no PCI address known';
  if (Number(env.LLMCB_GPUS ?? '1') > 1 && names.length > 1) throw unpinned(env.LLMCB_GPU, pin, names);
  return `pinned to GPU ${env.LLMCB_GPU} (${pin}): WebGPU adapter ${info.device || info.vendor || 'unknown'} (${info.description || 'no driver description'}); Dawn sees ${names.length} adapter(s)`;
}

/** What a pinned process sees: Dawn's adapters, and the device-select layer's own account (its debug lines). */
export interface PinProbe {
  adapters: string[]; // the adapters Dawn sees
  devices: { index: number; name: string; pci: string | null }[]; // the Vulkan devices the layer chose from ([] when it printed none: absent, or too old to)
  selected: number | null; // the one the DRI_PRIME tag picked, by the layer's debug line (null: none printed)
}

const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gpu-probe.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Starts a process pinned to slot (env: variables to add, e.g. for tests) and reads what it sees. */
export function probePin(slot: GpuSlot, workers: number, env: Record<string, string> = {}): PinProbe {
  const r = spawnSync(process.execPath, ['--import', TSX, PROBE], {
    env: { ...process.env, ...env, ...pinEnv(slot, workers, { ...process.env, ...env }), MESA_VK_DEVICE_SELECT_DEBUG: '1' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`GPU ${slot.index}: the probe process failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  return { adapters: JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[], ...parseDeviceSelectDebug(r.stderr) };
}

/** The device list and selection in the device-select layer's debug output (MESA_VK_DEVICE_SELECT_DEBUG=1). */
export function parseDeviceSelectDebug(text: string): Omit<PinProbe, 'adapters'> {
  const devices = new Map<number, PinProbe['devices'][number]>();
  for (const m of text.matchAll(/^ {2}GPU (\d+): [0-9a-f]+:[0-9a-f]+ "(.*)" [^\n]*?(?: ([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]))?$/gm)) {
    devices.set(Number(m[1]), { index: Number(m[1]), name: m[2], pci: m[3] ?? null });
  }
  const sel = /dri_prime_tag_default selected (-?\d+)/.exec(text);
  return { devices: [...devices.values()], selected: sel && Number(sel[1]) >= 0 ? Number(sel[1]) : null };
}

/**
 * Whether slot's pin holds, from a probe: throws when it cannot (Dawn sees no adapter or several,
 * or the layer picked another PCI address); else the line to log, which says whether the layer
 * confirmed the PCI address.
 */
export function pinVerdict(slot: GpuSlot, p: PinProbe): string {
  const pin = slot.pciBusId ? `DRI_PRIME=${driPrimeTag(slot.pciBusId)}` : 'no PCI address known';
  if (p.adapters.length === 0) throw new Error(`GPU ${slot.index} (${pin}): Dawn sees no adapter`);
  if (p.adapters.length > 1) throw unpinned(String(slot.index), pin, p.adapters);
  const want = slot.pciBusId ? pciAddress(slot.pciBusId) : null;
  const got = p.selected === null ? undefined : p.devices.find((d) => d.index === p.selected);
  if (want && got?.pci && got.pci !== want) throw new Error(`GPU ${slot.index}: the device-select layer picked ${got.pci} ('${got.name}'), not ${want}`);
  const how = got?.pci ? `the device-select layer confirms ${got.pci} (Vulkan device ${got.index} of ${p.devices.length})` : 'not confirmed by the device-select layer (it printed no selection)';
  return `${slotLabel(slot)}: Dawn sees one adapter, ${p.adapters[0]}; ${how}`;
}
