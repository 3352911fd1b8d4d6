// f64 references of the preference losses, written as the published code reads (TRL
// DPOTrainer.dpo_loss / KTOTrainer.kto_loss, LLaMA-Factory CustomDPOTrainer odds_ratio_loss /
// simpo_loss / get_batch_loss_metrics, CustomKTOTrainer.get_batch_loss_metrics, PairwiseTrainer):
// scalar batch losses of the sequences' summed log-probabilities, differentiated by central
// finite differences. Deliberately naive: no shared code with src/train/preference/.

export interface RefPrefOptions {
  beta: number;
  loss: 'sigmoid' | 'hinge' | 'ipo' | 'orpo' | 'simpo';
  ftx: number;
  labelSmoothing: number;
  simpoGamma: number;
  ktoChosenWeight: number;
  ktoRejectedWeight: number;
}

const logsigmoid = (x: number): number => -Math.log(1 + Math.exp(-x));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const meanOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * DPO-stage batch loss (mean over pairs). logps: [chosen (P)..., rejected (P)...] summed
 * log-probabilities; lens: labelled tokens; ref: reference logps (same layout) or null.
 */
export function refDpoLoss(o: RefPrefOptions, logps: number[], lens: number[], ref: number[] | null): number {
  const P = logps.length / 2;
  // concatenated_forward: ipo, orpo, simpo use logps / valid_length (for the reference too)
  const avg = o.loss === 'ipo' || o.loss === 'orpo' || o.loss === 'simpo';
  const all = logps.map((l, i) => (avg ? l / lens[i]! : l));
  const allRef = ref?.map((l, i) => (avg ? l / lens[i]! : l));
  const losses: number[] = [];
  for (let i = 0; i < P; i++) {
    const pc = all[i]!, pr = all[P + i]!;
    let loss: number;
    if (o.loss === 'orpo') {
      const logOdds = pc - pr - (Math.log1p(-Math.exp(pc)) - Math.log1p(-Math.exp(pr)));
      loss = -pc + o.beta * -logsigmoid(logOdds);
    } else if (o.loss === 'simpo') {
      const logits = pc - pr - o.simpoGamma / o.beta;
      loss = -logsigmoid(o.beta * logits);
    } else {
      const logits = pc - pr - (allRef![i]! - allRef![P + i]!);
      if (o.loss === 'sigmoid') loss = -logsigmoid(o.beta * logits) * (1 - o.labelSmoothing) - logsigmoid(-o.beta * logits) * o.labelSmoothing;
      else if (o.loss === 'hinge') loss = Math.max(0, 1 - o.beta * logits);
      else loss = (logits - 1 / (2 * o.beta)) ** 2;
    }
    // sft_loss = -chosen_logps_avg (chosen_logps / chosen_length for the sum losses)
    if (o.ftx > 1e-6) loss += o.ftx * -(logps[i]! / lens[i]!);
    losses.push(loss);
  }
  return meanOf(losses);
}

/** Rewards as TRL reports them: β(π - ref), or β π without a reference (orpo, simpo). */
export function refDpoRewards(o: RefPrefOptions, logps: number[], lens: number[], ref: number[] | null): number[] {
  const avg = o.loss === 'ipo' || o.loss === 'orpo' || o.loss === 'simpo';
  return logps.map((l, i) => o.beta * ((avg ? l / lens[i]! : l) - (ref && o.loss !== 'orpo' && o.loss !== 'simpo' ? (avg ? ref[i]! / lens[i]! : ref[i]!) : 0)));
}

/** KTO batch loss: losses.nanmean() + ftx rescaled as LLaMA-Factory. */
export function refKtoLoss(o: RefPrefOptions, logps: number[], lens: number[], tags: boolean[], ref: number[], kl: number[], refKl: number[]): number {
  const klv = Math.max(0, meanOf(kl.map((k, i) => k - refKl[i]!)));
  const chosen: number[] = [], rejected: number[] = [], chosenAvg: number[] = [];
  logps.forEach((l, i) => {
    const ratio = l - ref[i]!;
    if (tags[i]) {
      chosen.push(1 - sigmoid(o.beta * (ratio - klv)));
      chosenAvg.push(l / lens[i]!);
    } else rejected.push(1 - sigmoid(o.beta * (klv - ratio)));
  });
  const losses = [...chosen.map((x) => o.ktoChosenWeight * x), ...rejected.map((x) => o.ktoRejectedWeight * x)];
  let loss = meanOf(losses);
  if (o.ftx > 1e-6 && chosen.length > 0) loss += ((o.ftx * meanOf(chosenAvg.map((a) => -a))) / chosen.length) * logps.length;
  return loss;
}

export function refKl(kl: number[], refKl: number[]): number {
  return Math.max(0, meanOf(kl.map((k, i) => k - refKl[i]!)));
}

/** Reward model: -logsigmoid(chosen_scores - rejected_scores).mean(). */
export function refRmLoss(scores: number[]): number {
  const P = scores.length / 2;
  return meanOf(Array.from({ length: P }, (_, i) => -logsigmoid(scores[i]! - scores[P + i]!)));
}

/** Central differences of f at x, step h. */
export function numericGrad(f: (x: number[]) => number, x: number[], h = 1e-5): number[] {
  return x.map((_, i) => {
    const up = [...x], dn = [...x];
    up[i]! += h;
    dn[i]! -= h;
    return (f(up) - f(dn)) / (2 * h);
  });
}
