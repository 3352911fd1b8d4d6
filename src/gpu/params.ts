// Uniform parameters of dispatches. A submit's parameters are packed into one uniform buffer at
// aligned offsets: written on the host while dispatches are recorded, uploaded with one
// writeBuffer just before the submit, and overwritten from offset 0 by the next submit's (queue
// order: the GPU has read the earlier ones by then). Nothing is allocated per dispatch.

/** Plain numbers are u32 (i32 when negative), f32() marks a float. */
export type Param = number | { f32: number };
export const f32 = (x: number): Param => ({ f32: x });

const UNIFORM = 0x40; // GPUBufferUsage (globals are not set in every host)
const COPY_DST = 0x08;

/** Where one dispatch's parameters lie in the arena's buffer. */
export interface ParamSlot {
  offset: number;
  size: number;
}

export class ParamArena {
  readonly buffer: GPUBuffer;
  private readonly bytes: Uint8Array<ArrayBuffer>;
  private readonly view: DataView;
  private used = 0;

  /** `alignment`: the device's minUniformBufferOffsetAlignment. */
  constructor(device: GPUDevice, private readonly alignment: number, readonly capacity = 1 << 20) {
    this.buffer = device.createBuffer({ label: 'dispatch parameters', size: capacity, usage: UNIFORM | COPY_DST });
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Whether a dispatch with `count` parameters still fits before the next upload. */
  fits(count: number): boolean {
    return this.used + this.stride(count) <= this.capacity;
  }

  /** Writes the parameters at the next aligned offset (check fits() first). */
  push(params: readonly Param[]): ParamSlot {
    const offset = this.used;
    const size = bindingSize(params.length);
    if (offset + this.stride(params.length) > this.capacity) throw new Error(`${params.length} dispatch parameters overflow the arena`);
    params.forEach((p, i) => {
      const at = offset + i * 4;
      if (typeof p !== 'number') this.view.setFloat32(at, p.f32, true);
      else if (!Number.isInteger(p)) throw new Error(`uniform param ${i} = ${p} is not an integer; wrap floats in f32()`);
      else if (p < 0) this.view.setInt32(at, p, true);
      else this.view.setUint32(at, p, true);
    });
    this.bytes.fill(0, offset + params.length * 4, offset + size);
    this.used += this.stride(params.length);
    return { offset, size };
  }

  /** Uploads this submit's parameters (just before the submit) and starts over. */
  upload(queue: GPUQueue): void {
    if (this.used === 0) return;
    queue.writeBuffer(this.buffer, 0, this.bytes, 0, this.used);
    this.used = 0;
  }

  destroy(): void {
    this.buffer.destroy();
  }

  private stride(count: number): number {
    return Math.ceil(bindingSize(count) / this.alignment) * this.alignment;
  }
}

/** Bytes bound for `count` parameters: WGSL uniform structs are 16-byte multiples. */
const bindingSize = (count: number): number => Math.max(16, Math.ceil(count / 4) * 16);
