// Bind groups cached under keys of small ids (pipeline, group index, and each binding's buffer,
// offset and size), so a step that repeats its dispatches creates none. Destroying a buffer drops
// the groups that bind it; past a bound the cache starts over.

/** One binding: a byte range of a buffer (size undefined: to the end). */
export interface BufferRange {
  buffer: GPUBuffer;
  offset: number;
  size: number | undefined;
}

const MAX_GROUPS = 16384;

export class BindGroupCache {
  private readonly groups = new Map<string, { group: GPUBindGroup; buffers: number[] }>();
  /** Keys of the groups that bind each buffer id. */
  private readonly keysOf = new Map<number, Set<string>>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;

  constructor(private readonly device: GPUDevice) {}

  /** The group at `index` of the pipeline's layout with bindings 0..n-1 = ranges. */
  get(pipeline: GPUComputePipeline, index: number, ranges: readonly BufferRange[]): GPUBindGroup {
    let key = `${this.id(pipeline)}/${index}`;
    for (const r of ranges) key += `|${this.id(r.buffer)}:${r.offset}:${r.size ?? '*'}`;
    const hit = this.groups.get(key);
    if (hit) return hit.group;
    if (this.groups.size >= MAX_GROUPS) this.clear();
    const group = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(index),
      entries: ranges.map((r, i) => ({ binding: i, resource: { buffer: r.buffer, offset: r.offset, size: r.size } })),
    });
    const buffers = ranges.map((r) => this.id(r.buffer));
    this.groups.set(key, { group, buffers });
    for (const id of buffers) {
      let keys = this.keysOf.get(id);
      if (!keys) this.keysOf.set(id, (keys = new Set()));
      keys.add(key);
    }
    return group;
  }

  /** Drops the groups that bind `buffer` (about to be destroyed). */
  forget(buffer: GPUBuffer): void {
    const id = this.ids.get(buffer);
    if (id === undefined) return;
    for (const key of this.keysOf.get(id) ?? []) {
      for (const other of this.groups.get(key)?.buffers ?? []) if (other !== id) this.keysOf.get(other)?.delete(key);
      this.groups.delete(key);
    }
    this.keysOf.delete(id);
  }

  clear(): void {
    this.groups.clear();
    this.keysOf.clear();
  }

  private id(o: GPUBuffer | GPUComputePipeline): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }
}
