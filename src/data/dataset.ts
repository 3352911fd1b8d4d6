/**
 * buildDataset: LLaMA-Factory's data pipeline (loader.py) over injected file access, so the same
 * code runs in Node and in the browser.
 *
 *   dataset names → dataset_info.json entries → files (local, or the Hub through deps.fetchFile)
 *   → records (num_samples, max_samples) → aligned conversations → concat → val split
 *   → per-stage processing (template, masking, cutoff, packing) → train/eval examples (+ stats)
 */
import { DataError } from './errors.ts';
import { STAGES, exampleKind, type DataConfig, type DataDeps, type ExampleKind, type Stage } from './dataset-config.ts';
import type { DropCount } from './drops.ts';
import { interleave } from './mix.ts';
import { explainEmpty, processItems, type Item, type ProcessContext, type SplitStats } from './process.ts';
import type { Example, KtoExample } from './processor.ts';
import { permutation, shuffled } from './random.ts';
import { checkStage, loadDataset, resolveAttrs, splitNames, type Access, type LoadedDataset } from './sources.ts';
import { getTemplate, type ChatTemplate } from './templates.ts';
import { LLAMAFACTORY_PIXEL_LIMITS, type Qwen2VLImageConfig } from './image/qwen2vl.ts';
import { prepareImages, VISION_TEMPLATE } from './vision-data.ts';

export interface DatasetSourceStats {
  name: string;
  files: string[];
  records: number;
  used: number;
  pretokenized: boolean;
  dropped: DropCount[];
}

export interface DatasetStats {
  stage: Stage;
  kind: ExampleKind;
  template: string;
  cutoffLen: number;
  packing: boolean;
  neatPacking: boolean;
  datasets: DatasetSourceStats[];
  train: SplitStats;
  eval: SplitStats;
  warnings: string[];
}

export interface BuiltDataset<E extends Example = Example> {
  kind: ExampleKind;
  train: E[];
  eval: E[];
  stats: DatasetStats;
  template: ChatTemplate;
}

/**
 * Build the train and eval examples of a LLaMA-Factory data config.
 * Throws DataError for malformed files/records, unknown datasets, stage mismatches, and when no
 * example survives (with the reasons and where the first dropped record is).
 */
export async function buildDataset(config: DataConfig, deps: DataDeps): Promise<BuiltDataset> {
  const stage = (config.stage ?? 'sft') as Stage;
  if (!STAGES.includes(stage)) throw new DataError(`unknown stage "${stage}"; valid: ${STAGES.join(', ')}`);
  if (config.streaming) throw new DataError('streaming is not supported; remove `streaming: true`');
  const mix = config.mix_strategy ?? 'concat';
  if (!['concat', 'interleave_under', 'interleave_over', 'interleave_once'].includes(mix)) {
    throw new DataError(`unknown mix_strategy "${mix}"; valid: concat, interleave_under, interleave_over, interleave_once`);
  }
  let probs: number[] | undefined;
  if (config.interleave_probs !== undefined && config.interleave_probs !== null) {
    if (mix === 'concat') throw new DataError('`interleave_probs` is only valid for interleaved mixing');
    probs = String(config.interleave_probs).split(',').map((x) => Number(x.trim()));
    if (probs.some((p) => !(p >= 0)) || !(probs.reduce((a, b) => a + b, 0) > 0)) throw new DataError(`\`interleave_probs\` must be non-negative numbers, got ${JSON.stringify(config.interleave_probs)}`);
  }
  const trainOnPrompt = config.train_on_prompt === true;
  const maskHistory = config.mask_history === true;
  if (trainOnPrompt && maskHistory) throw new DataError('`mask_history` is incompatible with `train_on_prompt`');
  if (stage !== 'sft' && (trainOnPrompt || maskHistory)) throw new DataError('`train_on_prompt` and `mask_history` apply to stage sft only');
  if (stage !== 'sft' && config.neat_packing) throw new DataError('`neat_packing` applies to stage sft only');
  const names = splitNames(config.dataset);
  const evalNames = splitNames(config.eval_dataset);
  const generate = stage === 'sft' && config.predict_with_generate === true;
  // ppo trains on prompts: LLaMA-Factory's unsupervised processing (prompt as input, response as labels)
  const prompts = stage === 'ppo';
  if (!names.length && !(generate && evalNames.length)) throw new DataError('no `dataset` given');
  const valSize = config.val_size ?? 0;
  if (valSize < 0) throw new DataError('`val_size` must be >= 0');
  if (evalNames.length && valSize > 1e-6) throw new DataError('cannot set `val_size` together with `eval_dataset`');
  const seed = config.seed ?? 42;
  const neat = config.neat_packing === true;
  const explicitPacking = config.packing === true || neat;
  const packing = neat || (config.packing ?? stage === 'pt') === true;
  const cutoff0 = config.cutoff_len ?? 2048;
  if (!Number.isInteger(cutoff0) || cutoff0 < 2) throw new DataError('`cutoff_len` must be an integer >= 2');
  // LLaMA-Factory lowers cutoff_len by one when packing is set explicitly; packed rows are cutoff_len+1.
  const cutoffLen = explicitPacking ? cutoff0 - 1 : cutoff0;
  const tok = deps.tokenizer;
  const template =
    deps.template ??
    getTemplate(config.template ?? undefined, tok, {
      enableThinking: config.enable_thinking === false ? false : true,
      preserveThinking: config.preserve_thinking === true,
      defaultSystem: config.default_system ?? undefined,
      toolFormat: config.tool_format ?? undefined,
    });
  const warnings: string[] = [];
  const log = (m: string) => {
    warnings.push(m);
    deps.log?.(m);
  };
  const maxPixels = config.image_max_pixels ?? LLAMAFACTORY_PIXEL_LIMITS.maxPixels;
  const minPixels = config.image_min_pixels ?? LLAMAFACTORY_PIXEL_LIMITS.minPixels;
  if (!(Number.isInteger(maxPixels) && maxPixels > 0 && Number.isInteger(minPixels) && minPixels > 0)) throw new DataError(`\`image_max_pixels\` and \`image_min_pixels\` must be positive integers, got ${maxPixels} and ${minPixels}`);
  if (maxPixels < minPixels) throw new DataError(`\`image_max_pixels\` (${maxPixels}) cannot be smaller than \`image_min_pixels\` (${minPixels})`);
  for (const k of ['tokenized_path', 'eval_on_each_dataset']) {
    if (config[k] !== undefined && config[k] !== null && config[k] !== false) log(`\`${k}\` is not supported and is ignored`);
  }
  const access: Access = {
    readLocal: deps.readFile,
    listLocal: async (p) => (deps.listFiles ? deps.listFiles(p) : null),
  };
  const dir = config.dataset_dir ?? 'data';
  if (dir.startsWith('REMOTE:')) {
    const repo = dir.slice(7);
    if (!deps.fetchFile) throw new DataError(`dataset_dir "${dir}" needs Hub access (deps.fetchFile)`);
    const f = deps.fetchFile;
    access.readLocal = (p) => f(repo, p.slice(dir.length + 1));
    access.listLocal = async () => null;
  }

  const loadAll = async (list: string[]) => {
    const out: LoadedDataset[] = [];
    for (const { attr, autodetect } of await resolveAttrs(list, config, deps, access)) {
      const d = await loadDataset(attr, config, deps, access, dir, seed, autodetect);
      for (const w of d.warnings) log(w);
      checkStage(d.attr, stage, d.tokenized.length > 0);
      if (d.tokenized.length) log(`dataset "${d.attr.name}" is pre-tokenized: used as is (no template)`);
      out.push(d);
    }
    return out;
  };
  const loaded = await loadAll(names);
  const loadedEval = evalNames.length ? await loadAll(evalNames) : [];
  const withImages = [...loaded, ...loadedEval].some((d) => d.aligned.some((a) => a.images?.length));
  if (withImages) {
    const cfg = imageProcessorFor([...loaded, ...loadedEval], stage, packing, template.name, deps.imageProcessor);
    const limits = { maxPixels, minPixels };
    for (const d of [...loaded, ...loadedEval]) {
      for (const [i, a] of d.aligned.entries()) if (a.images?.length) d.aligned[i] = await prepareImages(a, access.readLocal, cfg, limits);
    }
  }

  const toItems = (ds: LoadedDataset[]): Item[] => {
    const lists = ds.map((d) => [...d.aligned.map((a): Item => ({ kind: 'aligned', a })), ...d.tokenized.map((t): Item => ({ kind: 'tok', t }))]);
    if (mix === 'concat' || lists.length < 2) return lists.flat();
    if (probs && probs.length !== lists.length) throw new DataError(`\`interleave_probs\` has ${probs.length} values for ${lists.length} datasets`);
    return interleave(lists, mix, probs, seed);
  };
  let trainItems = toItems(loaded);
  let evalItems = toItems(loadedEval);
  if (valSize > 1e-6) {
    const n = trainItems.length;
    const nTest = valSize >= 1 ? Math.trunc(valSize) : Math.ceil(valSize * n);
    if (nTest >= n) throw new DataError(`val_size ${valSize} leaves no training records (${n} records in total)`);
    const perm = permutation(n, seed);
    const testIdx = new Set(perm.slice(n - nTest));
    evalItems = perm.slice(n - nTest).map((i) => trainItems[i]);
    trainItems = trainItems.filter((_, i) => !testIdx.has(i));
  }

  // Pretraining appends eos to every document: LLaMA-Factory uses the tokenizer's eos after the
  // template replaced it (<|end_of_text|> for llama3); without a template, the tokenizer's own eos.
  const eosToken =
    stage === 'pt' && config.template === 'llama3'
      ? '<|end_of_text|>'
      : config.template || deps.template
        ? (tok.idToToken(template.eosId) ?? '')
        : (tok.eosToken ?? tok.idToToken(template.eosId) ?? '');
  const ctx: ProcessContext = {
    stage,
    kind: exampleKind(stage),
    template,
    tok,
    cutoffLen,
    packing: packing && (stage === 'pt' || stage === 'sft'),
    neat,
    packedLen: cutoffLen + 1,
    batchSize: config.preprocessing_batch_size ?? 1000,
    trainOnPrompt,
    maskHistory,
    eosText: eosToken,
    ...(withImages ? { imageMergeSize: deps.imageProcessor!.mergeSize } : {}),
  };
  if (stage === 'pt') ctx.packedLen = cutoffLen;
  const procDrops = new Map<string, Map<string, DropCount>>();
  const window = config.window;
  const train = processItems(trainItems, prompts ? { ...ctx, generate: true } : ctx, procDrops, window);
  const evalRes = processItems(evalItems, generate || prompts ? { ...ctx, generate: true, packing: false } : ctx, procDrops);

  if (names.length && train.stats.examples === 0) {
    let hint = '';
    if (stage === 'pt' && ctx.packing && train.stats.sequences > 0) hint = `hint: with packing, pretraining text is concatenated and cut into blocks of cutoff_len (${cutoffLen}) tokens; there is less text than one block — lower cutoff_len or set packing: false`;
    throw new DataError(explainEmpty(loaded, procDrops, ctx, hint));
  }
  // With a window these look at a few examples only: a training run makes them on the whole set.
  if (names.length && !window && ctx.kind !== 'pairwise' && !prompts && train.stats.learnedTokens === 0) {
    throw new DataError(`no training example has a token to learn (all labels are -100): cutoff_len ${cutoff0} leaves no room for the responses, or the responses are empty. ${train.stats.truncated} of ${train.stats.sequences} examples were truncated.`);
  }
  if (!window && ctx.kind === 'kto') {
    const pos = train.examples.filter((e) => (e as KtoExample).kto_tag).length;
    if (pos === 0 || pos === train.examples.length) log('the KTO dataset has only one preference type (all desirable or all undesirable)');
  }
  const trainExamples = config.shuffle === false ? train.examples : shuffled(train.examples, seed);

  const dsStats: DatasetSourceStats[] = [...loaded, ...loadedEval].map((d) => {
    const all = new Map(d.drops);
    for (const [k, v] of procDrops.get(d.attr.name) ?? []) {
      const cur = all.get(k);
      if (cur) cur.count += v.count;
      else all.set(k, { ...v });
    }
    const dropped = [...all.values()];
    const nd = dropped.reduce((s, x) => s + x.count, 0);
    if (nd) log(`dataset "${d.attr.name}": dropped ${nd} of ${d.records} records (${dropped.map((x) => `${x.count}: ${x.reason}`).join('; ')})`);
    return { name: d.attr.name, files: d.files, records: d.records, used: d.aligned.length + d.tokenized.length - (procDrops.get(d.attr.name) ? [...procDrops.get(d.attr.name)!.values()].reduce((s, x) => s + x.count, 0) : 0), pretokenized: d.tokenized.length > 0, dropped };
  });
  if (train.stats.truncated) log(`${train.stats.truncated} ${window ? `of the ${train.examples.length} examples shown were` : 'training examples were'} truncated to cutoff_len ${cutoff0}`);
  return {
    kind: ctx.kind,
    train: trainExamples,
    eval: evalRes.examples,
    template,
    stats: {
      stage,
      kind: ctx.kind,
      template: template.name,
      cutoffLen: cutoff0,
      packing: ctx.packing,
      neatPacking: neat,
      datasets: dsStats,
      train: train.stats,
      eval: evalRes.stats,
      warnings,
    },
  };
}

/**
 * The image processor for records with images, or a clear refusal: only LLaMA-Factory's qwen2_vl
 * template places images, on a model with a vision tower, in stage sft without packing (an image's
 * tokens must stay whole in one row). Otherwise the records would train without their pictures.
 */
function imageProcessorFor(ds: LoadedDataset[], stage: Stage, packing: boolean, template: string, cfg: Qwen2VLImageConfig | null | undefined): Qwen2VLImageConfig {
  const d = ds.find((x) => x.aligned.some((a) => a.images?.length))!;
  const a = d.aligned.find((x) => x.images?.length)!;
  const n = ds.reduce((s, x) => s + x.aligned.filter((r) => r.images?.length).length, 0);
  const refuse = (why: string) =>
    new DataError(`${n} record${n === 1 ? ' has' : 's have'} images (the first: ${a.images!.join(', ')}); ${why}: these records would train without their pictures`, {
      dataset: d.attr.name, file: a.source.file, line: a.source.line, index: a.source.index, field: d.attr.columns.images,
    });
  if (stage !== 'sft') throw refuse(`images are supported in stage sft only (not ${stage})`);
  if (packing) throw refuse('packing cannot keep each image\'s tokens with its pixels in one row yet; set packing: false and neat_packing: false');
  if (template !== VISION_TEMPLATE) throw refuse(`training on images needs \`template: ${VISION_TEMPLATE}\` (LLaMA-Factory's template that places Qwen2-VL's image tokens), not ${template === 'jinja' ? "the model's own chat template" : `"${template}"`}`);
  if (!cfg) throw refuse("the model has no vision tower (a Qwen2-VL checkpoint with vision_config and preprocessor_config.json is needed)");
  return cfg;
}
