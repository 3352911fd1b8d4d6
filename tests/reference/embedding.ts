// f64 CPU references for the embedding lookup and its gradient (src/kernels/embedding.ts).

type Arr = ArrayLike<number>;

/** out[t] = table[ids[t]] * scale (table [V, D] flat). */
export function embeddingRef(ids: ArrayLike<number>, table: Arr, D: number, scale = 1): Float64Array {
  const out = new Float64Array(ids.length * D);
  for (let t = 0; t < ids.length; t++) for (let d = 0; d < D; d++) out[t * D + d] = table[ids[t]! * D + d]! * scale;
  return out;
}

/** dTable[v] = scale * sum of dOut[t] over t with ids[t] = v, plus init when accumulating. */
export function embeddingBackwardRef(ids: ArrayLike<number>, dOut: Arr, V: number, D: number, scale = 1, init?: Arr): Float64Array {
  const dT = init ? Float64Array.from(init as ArrayLike<number>) : new Float64Array(V * D);
  for (let t = 0; t < ids.length; t++) for (let d = 0; d < D; d++) dT[ids[t]! * D + d]! += scale * dOut[t * D + d]!;
  return dT;
}
