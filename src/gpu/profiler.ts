// GPU time per kernel from timestamp queries: while a profiler is attached, every dispatch runs in
// its own compute pass with begin/end timestamps, labelled by pipeline. For benchmarks and
// `--profile` runs only (one pass per dispatch costs time by itself).

const MAX_QUERIES = 4096;

export class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private labels: string[] = [];
  private pending: { readback: GPUBuffer; labels: string[] }[] = [];
  /** Total nanoseconds and dispatch count per label. */
  readonly totals = new Map<string, { ns: number; count: number }>();

  constructor(private readonly device: GPUDevice) {
    if (!device.features.has('timestamp-query')) throw new Error('this GPU has no timestamp-query feature: profiling is unavailable');
    this.querySet = device.createQuerySet({ type: 'timestamp', count: MAX_QUERIES });
    this.resolve = device.createBuffer({ size: MAX_QUERIES * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** Pass descriptor for the next dispatch, or null when the query set is full (flush first). */
  passFor(label: string): GPUComputePassDescriptor | null {
    const i = this.labels.length * 2;
    if (i + 2 > MAX_QUERIES) return null;
    this.labels.push(label);
    return { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 } };
  }

  /** Called with the encoder before it is finished. */
  resolveInto(encoder: GPUCommandEncoder): void {
    const n = this.labels.length * 2;
    if (n === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, n, this.resolve, 0);
    const readback = this.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.copyBufferToBuffer(this.resolve, 0, readback, 0, n * 8);
    this.pending.push({ readback, labels: this.labels });
    this.labels = [];
  }

  /** Read the timestamps of everything submitted so far into `totals`. */
  async collect(): Promise<void> {
    for (const { readback, labels } of this.pending.splice(0)) {
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(readback.getMappedRange());
      labels.forEach((label, i) => {
        const e = this.totals.get(label) ?? { ns: 0, count: 0 };
        e.ns += Number(t[2 * i + 1]! - t[2 * i]!);
        e.count++;
        this.totals.set(label, e);
      });
      readback.destroy();
    }
  }

  /** Labels sorted by total time, with milliseconds and share. */
  report(): { label: string; ms: number; count: number; share: number }[] {
    const all = [...this.totals.entries()];
    const sum = all.reduce((a, [, v]) => a + v.ns, 0) || 1;
    return all
      .map(([label, v]) => ({ label, ms: v.ns / 1e6, count: v.count, share: v.ns / sum }))
      .sort((a, b) => b.ms - a.ms);
  }
}
