// The trainable tensors of a run packed into arenas: all values in one GPU buffer, all gradients in
// another, and each optimizer moment in one more, every tensor a view at the same 256-byte-aligned
// offset of each (more than one arena only where a buffer binding cannot hold them all). A step
// then clears every gradient with one clear, measures them with one reduction and updates them
// with one AdamW dispatch per arena, whatever the number of tensors.
//
// Packing copies each value and gradient into its view and hands the views to the tensor's owner
// (TrainableTensor.relocate), which points its layers at them and frees the old tensors; from then
// on the owner releases the views as it released its tensors, and each arena goes with its last
// view. The bytes between views stay zero and lie outside every segment: never measured nor updated.

import type { Gpu } from '../../gpu/runtime';
import { byteSize, numel, type Tensor } from '../../gpu/tensor';
import { adamwSegments, gradNormSquaredSegments, SEGMENT_GROUPS, segmentTable, type SegmentAdamWOptions, type SegmentTable } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';

/** View offsets are multiples of this many f32 elements (256 bytes, WebGPU's storage offset alignment). */
const ALIGN = 64;

/** The most f32 elements one arena holds on this GPU (one buffer, bound whole), a multiple of ALIGN. */
function maxArenaElements(gpu: Gpu): number {
  const limits = gpu.caps.limits;
  return Math.floor(Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize) / 4 / ALIGN) * ALIGN;
}

/** Where a tensor of a packed list lies: its arena and its first element there. */
export interface Placement {
  arena: number;
  offset: number;
}

/**
 * Lays tensors of the given element counts out in order, each at an aligned offset after the
 * previous one, starting a new arena where the next would pass `maxElements`.
 */
export function planArenas(sizes: readonly number[], maxElements: number): Placement[] {
  let arena = 0, used = 0;
  return sizes.map((n, i) => {
    if (n > maxElements) throw new Error(`trainable tensor ${i} has ${n} values; one buffer binding on this GPU holds at most ${maxElements}`);
    if (used > 0 && used + n > maxElements) {
      arena++;
      used = 0;
    }
    const offset = used;
    used = Math.ceil((offset + n) / ALIGN) * ALIGN;
    return { arena, offset };
  });
}

/** Per arena, the end of its last tensor. */
function spansOf(placements: readonly Placement[], sizes: readonly number[]): number[] {
  const spans: number[] = [];
  placements.forEach((at, i) => (spans[at.arena] = Math.max(spans[at.arena] ?? 0, at.offset + sizes[i]!)));
  return spans;
}

/** One zeroed buffer per arena, with a whole-arena tensor and a view per placed tensor. */
function arenaViews(gpu: Gpu, shapes: readonly (readonly number[])[], placements: readonly Placement[], spans: readonly number[], label: string): ArenaBuffers {
  const whole: Tensor[] = [], views: Tensor[] = [];
  spans.forEach((span, a) => {
    const members = placements.flatMap((at, i) => (at.arena === a ? [i] : []));
    const [all, ...each] = gpu.views(span * 4, [{ shape: [span], offset: 0 }, ...members.map((i) => ({ shape: shapes[i]!, offset: placements[i]!.offset * 4 }))], 'f32', label);
    whole.push(all!);
    members.forEach((i, k) => (views[i] = each[k]!));
  });
  return { whole, views };
}

/** Gradients GradientClip measures: an arena's, a part of them, or packed copies (BAdam's gathered entries). */
export interface GradientSet {
  /** out[0] = the sum of squares of the gradients. */
  gradNormSquared(out: Tensor): void;
}

/** One buffer per arena, laid out as the values: whole-arena tensors for the fused kernels, one view per parameter. */
export interface ArenaBuffers {
  whole: Tensor[];
  views: Tensor[];
}

/** How AdamW treats a parameter: its learning-rate multiplier and whether weight decay applies. */
export interface AdamWRule {
  lrScale: number;
  decay: boolean;
}

/** The segment tables of one fused AdamW (its parameters, grouped by rule). */
export interface AdamWSegments {
  tables: (SegmentTable | null)[];
  rules: AdamWRule[];
}

export class TrainableArena implements GradientSet {
  readonly values: ArenaBuffers;
  readonly grads: ArenaBuffers;
  /** Every parameter's segment, per arena (the gradient norm's tables). */
  private readonly all: (SegmentTable | null)[];
  private readonly tables: SegmentTable[] = [];

  private constructor(readonly gpu: Gpu, readonly params: readonly TrainableTensor[], private readonly placements: readonly Placement[], private readonly spans: readonly number[]) {
    this.values = this.buffers('trainable values');
    this.grads = this.buffers('trainable grads');
    this.all = this.segmentTables(() => 0);
  }

  /**
   * Moves the parameters into arenas: their `value` and `grad` become views (contents copied) and
   * their owners are told. A parameter without `relocate` is left to whoever made it.
   */
  static pack(gpu: Gpu, params: readonly TrainableTensor[]): TrainableArena {
    for (const p of params) {
      for (const [what, t] of [['value', p.value], ['gradient', p.grad]] as const) {
        if (t.dtype !== 'f32' || !t.buffer || numel(t.shape) !== numel(p.value.shape))
          throw new Error(`${p.name}: its ${what} must be one f32 tensor of ${numel(p.value.shape)} values to be trained`);
      }
    }
    const sizes = params.map((p) => numel(p.value.shape));
    const placements = planArenas(sizes, maxArenaElements(gpu));
    const arena = new TrainableArena(gpu, params, placements, spansOf(placements, sizes));
    params.forEach((p, i) => {
      const value = arena.values.views[i]!, grad = arena.grads.views[i]!;
      gpu.copy(p.value, value, byteSize(p.value.shape, 'f32'));
      gpu.copy(p.grad, grad, byteSize(p.value.shape, 'f32'));
      p.value = value;
      p.grad = grad;
      p.relocate?.(value, grad);
    });
    return arena;
  }

  /** Zeroed buffers laid out as the values (an optimizer moment), freed with release(...whole, ...views). */
  buffers(label: string): ArenaBuffers {
    return arenaViews(this.gpu, this.params.map((p) => p.value.shape), this.placements, this.spans, label);
  }

  /** Zeroes every gradient: one clear per arena. */
  clearGrads(): void {
    for (const g of this.grads.whole) this.gpu.zero(g);
  }

  /** out[0] = the sum of squares of all gradients. */
  gradNormSquared(out: Tensor): void {
    segmentNormSquared(this.gpu, this.grads.whole, this.all, out);
  }

  /** The gradients of the parameters `include` picks, measured over this arena's buffers (BAdam's active layer). */
  part(include: (p: TrainableTensor) => boolean): GradientSet {
    const tables = this.segmentTables((p) => (include(p) ? 0 : null));
    return { gradNormSquared: (out) => segmentNormSquared(this.gpu, this.grads.whole, tables, out) };
  }

  /**
   * The segments of a fused AdamW over the parameters `rule` gives a rule for (null: another
   * update handles it), at most SEGMENT_GROUPS distinct rules.
   */
  adamwSegments(rule: (p: TrainableTensor) => AdamWRule | null): AdamWSegments {
    const rules: AdamWRule[] = [];
    const tables = this.segmentTables((p) => {
      const r = rule(p);
      if (!r) return null;
      let k = rules.findIndex((q) => q.lrScale === r.lrScale && q.decay === r.decay);
      if (k < 0) k = rules.push(r) - 1;
      if (k >= SEGMENT_GROUPS) throw new Error(`the optimizer's parameters need more than ${SEGMENT_GROUPS} distinct (learning-rate scale, weight decay) groups`);
      return k;
    });
    return { tables, rules };
  }

  /** One AdamW step of the segments' parameters, with moments m and v (buffers()): one dispatch per arena. */
  adamw(segments: AdamWSegments, m: ArenaBuffers, v: ArenaBuffers, opts: Omit<SegmentAdamWOptions, 'groups'> & { lr: number; weightDecay: number }): void {
    const groups = segments.rules.map((r) => ({ lr: opts.lr * r.lrScale, weightDecay: r.decay ? opts.weightDecay : 0 }));
    segments.tables.forEach((table, a) => {
      if (table) adamwSegments(this.gpu, this.values.whole[a]!, this.grads.whole[a]!, m.whole[a]!, v.whole[a]!, table, { ...opts, groups });
    });
  }

  /** Frees the segment tables and this arena's whole-arena views (the parameter views stay with their owners). */
  release(): void {
    this.gpu.release(...this.tables.map((t) => t.tensor), ...this.values.whole, ...this.grads.whole);
  }

  /** Per arena, the table of the parameters `group` puts in a group (null: none there). */
  private segmentTables(group: (p: TrainableTensor) => number | null): (SegmentTable | null)[] {
    return this.spans.map((_, a) => {
      const segments = this.params.flatMap((p, i) => {
        const at = this.placements[i]!, n = numel(p.value.shape), k = at.arena === a && n > 0 ? group(p) : null;
        return k === null ? [] : [{ first: at.offset, end: at.offset + n, group: k }];
      });
      if (segments.length === 0) return null;
      const table = segmentTable(this.gpu, segments, 'arena segments');
      this.tables.push(table);
      return table;
    });
  }
}

/** out[0] = the sum of squares over the tables' segments of each buffer (a null table: none there). */
function segmentNormSquared(gpu: Gpu, buffers: readonly Tensor[], tables: readonly (SegmentTable | null)[], out: Tensor): void {
  gradNormSquaredSegments(gpu, buffers.flatMap((grads, a) => (tables[a] ? [{ grads, table: tables[a] }] : [])), out);
}

/**
 * f32 tensors of the given sizes as aligned views of one buffer (more where a binding is full),
 * measured with one reduction: BAdam's gathered gradient entries.
 */
export class PackedTensors implements GradientSet {
  readonly whole: Tensor[];
  readonly views: Tensor[];
  private readonly tables: (SegmentTable | null)[];

  constructor(readonly gpu: Gpu, sizes: readonly number[], label: string) {
    const placements = planArenas(sizes, maxArenaElements(gpu));
    const spans = spansOf(placements, sizes);
    ({ whole: this.whole, views: this.views } = arenaViews(gpu, sizes.map((n) => [n]), placements, spans, label));
    this.tables = spans.map((_, a) => {
      const segments = placements.flatMap((at, i) => (at.arena === a && sizes[i]! > 0 ? [{ first: at.offset, end: at.offset + sizes[i]!, group: 0 }] : []));
      return segments.length > 0 ? segmentTable(gpu, segments, `${label} segments`) : null;
    });
  }

  gradNormSquared(out: Tensor): void {
    segmentNormSquared(this.gpu, this.whole, this.tables, out);
  }

  release(): void {
    this.gpu.release(...this.whole, ...this.views, ...this.tables.flatMap((t) => (t ? [t.tensor] : [])));
  }
}
