// The GPU runtime shared by every host: tensor allocation and transfer, pipelines cached under
// short variant keys, bind groups (bind-groups.ts), dispatch parameters packed per submit
// (params.ts), and recording of dispatches into one command encoder (one compute pass) until
// flush().

import { BindGroupCache, type BufferRange } from './bind-groups';
import type { Capabilities } from './capabilities';
import { ParamArena, type Param } from './params';
import type { Profiler } from './profiler';
import type { ShaderSource } from './shader';
import { bufferSize, byteSize, numel, shapeStr, type DType, type Tensor } from './tensor';

export { f32, type Param } from './params';

/** Host-side work of the recorded commands. */
export interface GpuCounters {
  dispatches: number;
  /** Compute passes begun. */
  passes: number;
  /** Command buffers submitted. */
  submits: number;
  /** Milliseconds the host spent recording and submitting commands. */
  encodeMs: number;
}

export class GpuError extends Error {
  override name = 'GpuError';
}

/** A binding is a whole tensor or an explicit byte range of a buffer. */
export type Binding = Tensor | { buffer: GPUBuffer; offset?: number; size?: number };

const STORAGE = 0x80; // GPUBufferUsage.STORAGE (globals are not set in every host)
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;

export class Gpu {
  readonly device: GPUDevice;
  readonly caps: Capabilities;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly bindGroups: BindGroupCache;
  private readonly params: ParamArena;
  private readonly transients: Tensor[] = [];
  /** The views of each arena buffer not yet released. */
  private readonly arenaViews = new Map<GPUBuffer, Set<Tensor>>();
  private readonly paceMarks: Promise<undefined>[] = [];
  private lost: string | null = null;
  private error: string | null = null;
  /**
   * Allocate, upload and bind as usual, but run no kernel: sizes the engine's memory for
   * shapes a software adapter cannot compute in reasonable time (bench --memory-target). Buffers
   * read back hold whatever was uploaded, or zeros.
   */
  allocationOnly = false;
  /** Bytes currently allocated through tensor(); peak is the high-water mark. */
  allocated = 0;
  peakAllocated = 0;
  /** What was recorded and submitted since the last resetCounters(): per-step figures for benchmarks. */
  readonly counters: GpuCounters = { dispatches: 0, passes: 0, submits: 0, encodeMs: 0 };
  /** When set, each dispatch is timed (see profiler.ts). */
  profiler: Profiler | null = null;

  constructor(device: GPUDevice, caps: Capabilities) {
    this.device = device;
    this.caps = caps;
    this.bindGroups = new BindGroupCache(device);
    this.params = new ParamArena(device, device.limits.minUniformBufferOffsetAlignment);
    device.lost.then((info) => {
      this.lost = `GPU device lost (${info.reason}): ${info.message || 'no details'}`;
    });
    const onError = (ev: Event) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.error ??= err?.message ?? String(err);
    };
    if (typeof device.addEventListener === 'function') device.addEventListener('uncapturederror', onError);
    else (device as unknown as { onuncapturederror: unknown }).onuncapturederror = onError;
  }

  // ---- tensors -------------------------------------------------------------------------------

  tensor(shape: readonly number[], dtype: DType = 'f32', label?: string): Tensor {
    this.check();
    const size = byteSize(shape, dtype);
    const max = this.caps.limits.maxBufferSize;
    if (size > max) {
      throw new GpuError(`tensor ${label ?? ''}${shapeStr(shape)} ${dtype} needs ${size} bytes; this GPU allows ${max} per buffer`);
    }
    const buffer = this.device.createBuffer({
      label,
      size: bufferSize(shape, dtype),
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    this.allocated += buffer.size;
    this.peakAllocated = Math.max(this.peakAllocated, this.allocated);
    return { buffer, shape: [...shape], dtype, offset: 0 };
  }

  /**
   * One buffer of `bytes` (an arena) holding several tensors at the given byte offsets (multiples
   * of 256). It is freed once release() has been called on each of these views; the bytes between
   * views start as zeros.
   */
  views(bytes: number, views: readonly { shape: readonly number[]; offset: number }[], dtype: DType, label?: string): Tensor[] {
    this.check();
    const max = Math.min(this.caps.limits.maxBufferSize, this.caps.limits.maxStorageBufferBindingSize);
    if (bytes > max) throw new GpuError(`arena ${label ?? ''} needs ${bytes} bytes; this GPU allows ${max} per buffer binding`);
    for (const v of views) {
      if (v.offset % 256 !== 0 || v.offset + byteSize(v.shape, dtype) > bytes)
        throw new GpuError(`arena ${label ?? ''}: a view ${shapeStr(v.shape)} at byte ${v.offset} is unaligned or outside its ${bytes} bytes`);
    }
    const buffer = this.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: STORAGE | COPY_SRC | COPY_DST });
    this.allocated += buffer.size;
    this.peakAllocated = Math.max(this.peakAllocated, this.allocated);
    const out = views.map((v): Tensor => ({ buffer, shape: [...v.shape], dtype, offset: v.offset }));
    this.arenaViews.set(buffer, new Set(out));
    return out;
  }

  upload(data: ArrayBufferView, shape: readonly number[], dtype: DType = 'f32', label?: string): Tensor {
    const t = this.tensor(shape, dtype, label);
    this.write(t, data);
    return t;
  }

  /**
   * Write host data into a tensor, in program order: queue writes run before any command buffer
   * submitted after them, so whatever was recorded so far is submitted first.
   */
  write(t: Tensor, data: ArrayBufferView, byteOffset = 0): void {
    this.check();
    this.submitRecorded();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    // writeBuffer needs a multiple of 4 bytes
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(t.buffer, t.offset + byteOffset, padded);
  }

  /** Fill with zeros on the GPU timeline (ordered with recorded dispatches). */
  zero(t: Tensor): void {
    const t0 = performance.now();
    this.endPass();
    this.enc().clearBuffer(t.buffer, t.offset, Math.ceil(byteSize(t.shape, t.dtype) / 4) * 4);
    this.counters.encodeMs += performance.now() - t0;
  }

  /**
   * A tensor for data that only the work recorded before the next flush() reads (per-call index
   * lists a kernel uploads): flush() releases it once it has submitted that work.
   */
  transient(shape: readonly number[], dtype: DType = 'f32', label?: string): Tensor {
    const t = this.tensor(shape, dtype, label);
    this.transients.push(t);
    return t;
  }

  /** Free a tensor at the next flush(), once the work recorded so far (which may use it) is submitted. */
  releaseAtFlush(t: Tensor): void {
    this.transients.push(t);
  }

  copy(src: Tensor, dst: Tensor, bytes = byteSize(src.shape, src.dtype), srcOffset = 0, dstOffset = 0): void {
    const t0 = performance.now();
    this.endPass();
    this.enc().copyBufferToBuffer(src.buffer, src.offset + srcOffset, dst.buffer, dst.offset + dstOffset, bytes);
    this.counters.encodeMs += performance.now() - t0;
  }

  async readBytes(t: Tensor, bytes = byteSize(t.shape, t.dtype), byteOffset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: MAP_READ | COPY_DST });
    this.endPass();
    this.enc().copyBufferToBuffer(t.buffer, t.offset + byteOffset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
    } catch (e) {
      this.check();
      throw new GpuError(`reading ${t.buffer.label || 'tensor'} back failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.destroy();
    this.check();
    return out;
  }

  /** f32 and f16 tensors come back as Float32Array, i32 as Int32Array, u32 and packed as Uint32Array. */
  async read(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
    const buf = await this.readBytes(t);
    if (t.dtype === 'f32') return new Float32Array(buf);
    if (t.dtype === 'i32') return new Int32Array(buf);
    if (t.dtype === 'f16') return f16ToF32(new Uint16Array(buf, 0, numel(t.shape)));
    return new Uint32Array(buf);
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new GpuError(`readF32 on a ${t.dtype} tensor`);
    return (await this.read(t)) as Float32Array;
  }

  /**
   * Free tensors. Recorded work is submitted first: it may still use them. A view of an arena
   * (views()) frees the arena with its last view; other views (a non-zero offset) free nothing.
   */
  release(...ts: (Tensor | undefined | null)[]): void {
    this.flush();
    for (const t of ts) {
      if (!t) continue;
      const arena = this.arenaViews.get(t.buffer);
      if (arena) {
        if (!arena.delete(t) || arena.size > 0) continue;
        this.arenaViews.delete(t.buffer);
      } else if (t.offset !== 0) continue;
      this.allocated -= t.buffer.size;
      this.bindGroups.forget(t.buffer);
      t.buffer.destroy();
    }
  }

  // ---- compute -------------------------------------------------------------------------------

  /**
   * The compute pipeline cached under `key`, a short name of the variant (`gemm:NT:f16`); `build`
   * gives its WGSL on a miss only. The key is the pipeline's label (profiles, errors).
   */
  pipeline(key: string, build: () => ShaderSource): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      this.check();
      const { code, entryPoint } = build();
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipeline({ label: key, layout: 'auto', compute: { module, entryPoint } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Record one dispatch. Bindings go to @group(0) in order @binding(0..n-1); `params`, when given,
   * are the uniform at @group(1) @binding(0). Workgroup counts above the per-dimension limit must
   * be folded by the caller with grid().
   */
  dispatch(
    pipeline: GPUComputePipeline,
    bindings: readonly Binding[],
    workgroups: readonly [number, number?, number?],
    params?: readonly Param[],
  ): void {
    this.check();
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    // these may submit what is recorded: before this dispatch's parameters go into the arena
    if (params && !this.params.fits(params.length)) this.submitRecorded();
    if (this.profiler) this.beginTimedPass(this.profiler, pipeline.label);
    const t0 = performance.now();
    const group = this.bindGroups.get(pipeline, 0, bindings.map((b, i) => this.range(pipeline, b, i)));
    const paramGroup = params ? this.bindGroups.get(pipeline, 1, [{ buffer: this.params.buffer, ...this.params.push(params) }]) : null;
    const pass = this.beginPass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    if (paramGroup) pass.setBindGroup(1, paramGroup);
    if (!this.allocationOnly) pass.dispatchWorkgroups(x, y, z);
    this.counters.dispatches++;
    if (this.profiler) this.endPass();
    this.counters.encodeMs += performance.now() - t0;
  }

  /** Split a 1-D workgroup count into x/y under the per-dimension limit (shaders fold it back). */
  grid(count: number): [number, number] {
    const max = this.caps.limits.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [count, 1];
    const y = Math.ceil(count / max);
    return [Math.ceil(count / y), y];
  }

  /** Submit everything recorded so far, then free transient tensors (their users are submitted). */
  flush(): void {
    this.submitRecorded();
    if (this.transients.length) this.release(...this.transients.splice(0));
  }

  /**
   * Submit what is recorded and wait until at most `inFlight` earlier pace() points are still
   * running on the GPU: bounds how far the host runs ahead, and yields to the event loop.
   */
  async pace(inFlight: number): Promise<void> {
    this.flush();
    this.paceMarks.push(this.device.queue.onSubmittedWorkDone());
    while (this.paceMarks.length > inFlight) await this.paceMarks.shift();
    await nextTask(); // the marks may have resolved already: a microtask alone would not let events in
    this.check();
  }

  resetCounters(): void {
    Object.assign(this.counters, { dispatches: 0, passes: 0, submits: 0, encodeMs: 0 });
  }

  /** Wait until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Throws if the device was lost or a validation error occurred since the last check. */
  check(): void {
    if (this.lost) throw new GpuError(`${this.lost}. Work since the last checkpoint is lost; restart the run (it resumes from the last checkpoint).`);
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw new GpuError(`WebGPU error: ${e}`);
    }
  }

  destroy(): void {
    this.flush();
    this.params.destroy();
    this.device.destroy();
  }

  // ---- internals -----------------------------------------------------------------------------

  /** Submit the recorded commands (transients stay alive: a caller may be about to write one). */
  private submitRecorded(): void {
    this.endPass();
    if (this.encoder) {
      const t0 = performance.now();
      this.profiler?.resolveInto(this.encoder);
      this.params.upload(this.device.queue);
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.counters.submits++;
      this.counters.encodeMs += performance.now() - t0;
    }
  }

  private enc(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private beginPass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.pass = this.enc().beginComputePass();
      this.counters.passes++;
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** A pass of its own with timestamps for the next dispatch (submitting first when the query set is full). */
  private beginTimedPass(profiler: Profiler, label: string): void {
    this.endPass();
    let desc = profiler.passFor(label);
    if (!desc) {
      this.flush();
      desc = profiler.passFor(label)!;
    }
    this.pass = this.enc().beginComputePass(desc);
    this.counters.passes++;
  }

  /** The byte range a binding covers, checked against the device's storage binding limit. */
  private range(pipeline: GPUComputePipeline, b: Binding, i: number): BufferRange {
    const r = 'shape' in b
      ? { buffer: b.buffer, offset: b.offset, size: Math.ceil(byteSize(b.shape, b.dtype) / 4) * 4 }
      : { buffer: b.buffer, offset: b.offset ?? 0, size: b.size };
    const limit = this.caps.limits.maxStorageBufferBindingSize;
    if (r.size !== undefined && r.size > limit) {
      throw new GpuError(`binding ${i} of ${pipeline.label} is ${r.size} bytes, over this GPU's ${limit}-byte binding limit; split the tensor`);
    }
    return r;
  }
}

/** Resolves in a later task of the event loop (after pending I/O and signals). */
const nextTask: () => Promise<void> =
  typeof setImmediate === 'function' ? () => new Promise((r) => setImmediate(r)) : () => new Promise((r) => setTimeout(r, 0));

function padTo4(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}

export function f16ToF32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]!);
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
