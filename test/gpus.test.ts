// Several GPUs of one host (run.ts --gpus: lib/gpus.ts, lib/shard-pool.ts): the GPUs nvidia-smi
// lists and the pin each worker gets; the pin check on two identical Vulkan devices (lavapipe
// loaded twice: Mesa's device-select layer, installed or carried, must leave Dawn one), also through
// run.ts --gpus 2 on webgpu with a fake nvidia-smi; and the smoke matrix (one model) on two CPU
// workers, interrupted and rerun: the merged rows equal a single-process run's, each once.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveDataDir } from '../lib/data/common';
import { checkPinnedAdapter, gpuSlots, parseDevices, parseDeviceSelectDebug, parseNvidiaSmi, pinEnv, pinVerdict, probePin, type GpuSlot } from '../lib/gpus';
import { pidAlive } from '../lib/lock';
import { parseSlice, smokeMatrix, type Cell } from '../lib/matrix';
import { readResults, trackFile } from '../lib/results';
import { longestFirst, poolCode } from '../lib/shard-pool';
import { extendPlan, shardsOf } from '../lib/slurm';
import { runMatrix } from '../lib/tracks/runner';
import { expectSameRows, TRACKS } from './shard-helpers';

const ROOT = path.resolve(__dirname, '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const SMI = '0, GPU-aaaa, 00000000:18:00.0, NVIDIA H200\n1, GPU-bbbb, 00000000:2A:00.0, NVIDIA H200\n';

describe('GPUs and pins', () => {
  it('reads nvidia-smi, picks the GPUs asked for, and pins each by PCI address and UUID', () => {
    const listed = parseNvidiaSmi(SMI);
    expect(listed.map((g) => [g.index, g.uuid, g.name])).toEqual([[0, 'GPU-aaaa', 'NVIDIA H200'], [1, 'GPU-bbbb', 'NVIDIA H200']]);
    const [g1] = gpuSlots([1], listed);
    expect(pinEnv(g1, 2, {})).toEqual({
      LLMCB_GPU: '1', LLMCB_GPUS: '2', CUDA_VISIBLE_DEVICES: 'GPU-bbbb', DRI_PRIME: 'pci-0000_2a_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
    });
    expect(() => gpuSlots([0, 2], listed)).toThrow(/GPU 2 is not on this host: nvidia-smi lists 0 \(NVIDIA H200\), 1/);
    expect(() => gpuSlots([1, 1], listed)).toThrow(/named twice/);
    expect(() => parseNvidiaSmi('0, GPU-a, [N/A], X')).toThrow(/cannot read the line/);
    expect([parseDevices('3', undefined), parseDevices(undefined, '0,2')]).toEqual([[0, 1, 2], [0, 2]]);
    expect(() => parseDevices('2', '0,1')).toThrow(/give one of --gpus N and --devices I,J/);
    expect(() => parseDevices('0', undefined)).toThrow(/--gpus needs an integer ≥ 1, got '0'/);
    expect(() => parseDevices(undefined, '0,x')).toThrow(/--devices needs an integer ≥ 0, got 'x'/);
    // no nvidia-smi: bare worker slots (CPU workers), no pin
    expect(gpuSlots([0, 1], null).map((s) => pinEnv(s, 2, {}))).toEqual([{ LLMCB_GPU: '0', LLMCB_GPUS: '2' }, { LLMCB_GPU: '1', LLMCB_GPUS: '2' }]);
  });

  it('a pin holds when Dawn sees one adapter and the layer picked the GPU’s PCI address; otherwise it is an error', () => {
    const slot: GpuSlot = parseNvidiaSmi(SMI)[1];
    const debug = 'selectable devices:\n  GPU 0: 10de:2335 "NVIDIA H200" discrete GPU 0000:18:00.0\n  GPU 1: 10de:2335 "NVIDIA H200" discrete GPU 0000:2a:00.0\n';
    const sel = (i: number) => `${debug}device-select: device_select_find_dri_prime_tag_default selected ${i}\n`;
    expect(pinVerdict(slot, { adapters: ['NVIDIA H200'], ...parseDeviceSelectDebug(sel(1)) })).toMatch(/confirms 0000:2a:00.0 \(Vulkan device 1 of 2\)/);
    expect(() => pinVerdict(slot, { adapters: ['NVIDIA H200'], ...parseDeviceSelectDebug(sel(0)) })).toThrow(/picked 0000:18:00.0 .*not 0000:2a:00.0/);
    expect(() => pinVerdict(slot, { adapters: ['NVIDIA H200', 'NVIDIA H200'], devices: [], selected: null })).toThrow(/did not take: Dawn sees 2 adapters/);
    expect(pinVerdict(slot, { adapters: ['NVIDIA H200'], devices: [], selected: null })).toMatch(/not confirmed/);
  });

  it('a pinned process refuses to run beside other workers when Dawn shows it several adapters', async () => {
    const fakeCreate = (names: string[]) => () =>
      ({ requestAdapter: async () => Promise.reject(new Error(`no suitable backends found\nAvailable adapters:${names.map((n) => `\n * backend: 'vulkan', name: '${n}'`).join('')}`)) }) as unknown as GPU;
    const info = { device: 'nvidia-h200', description: 'NVIDIA 580' } as GPUAdapterInfo;
    const env = { LLMCB_GPU: '1', LLMCB_GPUS: '2', DRI_PRIME: 'pci-0000_2a_00_0' };
    await expect(checkPinnedAdapter(info, fakeCreate(['NVIDIA H200']), env)).resolves.toMatch(/pinned to GPU 1 \(DRI_PRIME=pci-0000_2a_00_0\): WebGPU adapter nvidia-h200/);
    await expect(checkPinnedAdapter(info, fakeCreate(['NVIDIA H200', 'NVIDIA H200']), env)).rejects.toThrow(/pin to GPU 1 .* did not take/);
    await expect(checkPinnedAdapter(info, fakeCreate(['a', 'b']), { LLMCB_GPU: '0', LLMCB_GPUS: '1' })).resolves.toMatch(/sees 2 adapter/); // one worker: nothing to share
    await expect(checkPinnedAdapter(info, fakeCreate(['a', 'b']), {})).resolves.toBeNull(); // not a worker
  });

  it('plans keep their shards: a saved pair keeps its index, a new one is appended; exit codes as run.ts', () => {
    const cell = (model: string, method: string) => ({ model: { id: model }, method: { id: method } }) as Cell;
    const saved = shardsOf([cell('a', 'dense'), cell('a', 'rtn')]);
    const plan = extendPlan(saved, [cell('b', 'dense'), cell('a', 'rtn')], { tracks: [1, 4], tasks: ['piqa'] });
    // a shard runs its pair's part of the run's slice
    expect(plan.map((s) => s.slice)).toEqual(['models=a;methods=dense', 'models=a;methods=rtn;tracks=1,4;tasks=piqa', 'models=b;methods=dense;tracks=1,4;tasks=piqa']);
    expect(() => shardsOf([cell('a', 'dense')], { tasks: ['x;y'] })).toThrow(/'x;y' cannot go into a --slice/);
    expect([poolCode([0, 0]), poolCode([0, 1]), poolCode([1, 3, 0]), poolCode([])]).toEqual([0, 1, 3, 0]);
    const q = (id: string, bytes: number | null, cells: number) => ({ id, bytes, cells });
    expect(longestFirst([q('a', 10, 2), q('b', 100, 1), q('c', 10, 2), q('d', null, 5)]).map((x) => x.id)).toEqual(['b', 'a', 'c', 'd']);
  });
});

// Two identical Vulkan devices without a GPU: Mesa's lavapipe driver listed twice.
const LVP = ['/usr/share/vulkan/icd.d/lvp_icd.json', '/usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json'];
const noLvp = LVP.find((f) => !fs.existsSync(f));
describe.skipIf(noLvp !== undefined)('the pin check on two identical Vulkan devices (lavapipe twice)', () => {
  it('with the device-select layer (installed, or a carried copy) Dawn sees one adapter; without it two, and the pin is refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-lvp-'));
    fs.copyFileSync(LVP[0], path.join(dir, 'lvp2_icd.json'));
    const env = { XDG_RUNTIME_DIR: os.tmpdir(), VK_DRIVER_FILES: `${LVP[0]}:${path.join(dir, 'lvp2_icd.json')}` };
    const slot: GpuSlot = { index: 1, uuid: null, pciBusId: '00000000:2a:00.0', name: null };
    const pinned = probePin(slot, 2, env);
    expect(pinned.adapters).toHaveLength(1);
    expect(pinned.devices).toHaveLength(2); // the layer chose among both
    expect(pinVerdict(slot, pinned)).toMatch(/Dawn sees one adapter, llvmpipe/);
    const unpinned = probePin(slot, 2, { ...env, NODEVICE_SELECT: '1' }); // the installed layer off
    expect(unpinned.adapters).toHaveLength(2);
    expect(() => pinVerdict(slot, unpinned)).toThrow(/did not take: Dawn sees 2 adapters/);
    // a copy of the layer carried to a host without it (scripts/gpu-pin-layer.sh, LLMCB_DEVICE_SELECT_LAYER)
    const carried = path.join(dir, 'device-select');
    expect(spawnSync('bash', [path.join(ROOT, 'scripts/gpu-pin-layer.sh'), carried], { encoding: 'utf8' }).status).toBe(0);
    const viaCopy = probePin(slot, 2, { ...env, NODEVICE_SELECT: '1', LLMCB_DEVICE_SELECT_LAYER: carried });
    expect(viaCopy.adapters).toHaveLength(1);
    expect(pinVerdict(slot, viaCopy)).toMatch(/Dawn sees one adapter/);
    expect(() => pinEnv(slot, 2, { LLMCB_DEVICE_SELECT_LAYER: dir })).toThrow(/no VkLayer_MESA_device_select.json there/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  it('run.ts --gpus 2 on webgpu (nvidia-smi faked): the pins are probed, each worker logs its one adapter; without the layer the run stops before any shard', { timeout: 600_000 }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-lvp-'));
    fs.copyFileSync(LVP[0], path.join(dir, 'lvp2_icd.json'));
    fs.writeFileSync(path.join(dir, 'nvidia-smi'), `#!/bin/sh\nprintf '${SMI.replace(/\n/g, '\\n')}'\n`, { mode: 0o755 });
    const env = { ...process.env, XDG_RUNTIME_DIR: os.tmpdir(), VK_DRIVER_FILES: `${LVP[0]}:${path.join(dir, 'lvp2_icd.json')}`, PATH: `${dir}:${process.env.PATH}` };
    const run = (out: string, extra: Record<string, string> = {}) =>
      spawnSync(process.execPath, ['--import', TSX, 'scripts/run.ts', '--matrix', 'smoke', '--slice', 'models=stories260K;methods=dense,rtn-w8;tracks=1;tasks=wikitext2', '--backend', 'webgpu', '--no-hub', '--no-derived', '--gpus', '2', '--out', path.join(dir, out)], {
        cwd: ROOT, encoding: 'utf8', env: { ...env, ...extra },
      });
    const ok = run('ok');
    expect(ok.status, ok.stderr.slice(-2000)).toBe(0);
    expect(ok.stderr).toMatch(/^GPU 1 \(NVIDIA H200, 00000000:2A:00.0, GPU-bbbb\): Dawn sees one adapter, llvmpipe/m);
    expect(ok.stderr).toMatch(/^\[GPU 1\] pinned to GPU 1 \(DRI_PRIME=pci-0000_2a_00_0\): WebGPU adapter llvmpipe.*Dawn sees 1 adapter/m);
    // WikiText-2 where the datasets are (../shared), else no_data: the pinned workers ran the cells either way.
    const status = resolveDataDir(undefined, ROOT) ? 'ok' : 'no_data';
    expect(TRACKS.flatMap((t) => readResults(trackFile(t, path.join(dir, 'ok')))).map((r) => `${r.method} ${r.status}`).sort()).toEqual([`dense ${status}`, `rtn ${status}`]);
    const refused = run('refused', { NODEVICE_SELECT: '1' }); // the layer off: the probe sees both devices
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/the pin to GPU 0 \(DRI_PRIME=pci-0000_18_00_0\) did not take: Dawn sees 2 adapters/);
    expect(refused.stderr).not.toMatch(/shard 0:/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('the smoke matrix on two workers', () => {
  it('interrupted and rerun: the merged rows equal a single-process run, each cell once; Ctrl-C ends the workers', { timeout: 900_000 }, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-gpus-'));
    const ref = path.join(tmp, 'ref');
    const out = path.join(tmp, 'out');
    const slice = 'models=stories260K'; // 5 pairs: 5 shards over 2 workers
    await runMatrix({ ...smokeMatrix(), backend: 'wasm' }, { out: ref, slice: parseSlice(slice), hub: false, log: () => undefined });
    const args = ['--import', TSX, 'scripts/run.ts', '--matrix', 'smoke', '--slice', slice, '--backend', 'wasm', '--no-hub', '--no-derived', '--gpus', '2', '--out', out];

    // First run: interrupted (SIGINT, as Ctrl-C) once a shard has been merged.
    const first = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    first.stdout.on('data', (d) => (log += d));
    first.stderr.on('data', (d) => (log += d));
    const firstExit = new Promise<number | null>((resolve) => first.on('close', (code) => resolve(code)));
    for (let t = 0; t < 6000 && !/\[1\/5 done/.test(log); t++) await new Promise((r) => setTimeout(r, 100));
    expect(log).toMatch(/exit 0 in .* \[1\/5 done/);
    first.kill('SIGINT');
    expect(await firstExit).toBe(130);
    const workers = [...log.matchAll(/\[GPU \d\] shard \d+: .*, pid (\d+)/g)].map((m) => Number(m[1]));
    expect(workers.length).toBeGreaterThanOrEqual(2);
    expect(workers.filter(pidAlive)).toEqual([]); // the interrupted run's shard processes ended with it
    expect(fs.existsSync(path.join(out, '.run.lock'))).toBe(false);

    // Rerun: only what is left; exit 0.
    const second = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
    expect(second.status, second.stderr.slice(-2000)).toBe(0);
    const queued = Number(/pending cells in (\d+) shard/.exec(second.stderr)?.[1]);
    expect(queued).toBeGreaterThan(0);
    expect(queued).toBeLessThan(5);
    expect(second.stdout).toMatch(/0 cell\(s\) still pending/);

    expectSameRows(out, ref);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});
