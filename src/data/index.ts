/**
 * Crucible data layer: tokenizers, chat templates, LLaMA-Factory datasets, labels, batching.
 * Browser-safe; Node helpers (loadTokenizerFromDir, nodeFileAccess) live in ./node.ts.
 *
 * Tokenizer
 *   loadTokenizer({ tokenizerJson, tokenizerConfig?, chatTemplate?, generationConfig? }) → Tokenizer
 *   loadTokenizerFromDir(dir)                              (./node.ts; reads tokenizer.json,
 *                                                           tokenizer_config.json, chat_template.jinja)
 *   tok.encode(text, { addSpecialTokens })  default false: special-token text ("<|im_end|>") is
 *                                           parsed as the special token, nothing is added
 *   tok.encodeAsText(text)                  special-token text stays text (split_special_tokens)
 *   tok.countTokens(text)                   encode's length, uncached (bounds on long texts)
 *   tok.decode(ids, { skipSpecialTokens })
 *   tok.bosId / eosId / eosIds / padId (pad falls back to eos) / tokenToId / idToToken /
 *   isSpecial / specialTokens / chatTemplate / vocabSize
 *   tok.createStreamDecoder() → { push(id) → text, flush() }: only ever emits complete characters
 *
 * Chat templates
 *   getTemplate(name | undefined, tok, { enableThinking, preserveThinking, defaultSystem, toolFormat })
 *     name: one of TEMPLATE_NAMES (LLaMA-Factory's text templates for the families Crucible runs
 *     and Llama-like ones: llama3, qwen3, gemma3, mistral, phi4, deepseekr1, gpt_oss, ...);
 *     undefined → the model's own Jinja chat_template (or `empty` if it has none).
 *     Unknown names throw UnknownTemplateError listing the valid ones; LLaMA-Factory's multimodal
 *     templates and those of other architectures throw UnsupportedTemplateError saying so.
 *   templateFromConfig(config, tok): the same from a config's template keys
 *   savedTokenizerConfig(config, template): tokenizer_config.json as a trained/merged model
 *     carries it (the named template as chat_template when the model has none, its eos_token,
 *     pad_token = eos when missing; LLaMA-Factory's fix_special_tokens + fix_jinja_template)
 *   withChatTemplate(fileName, text, template): the same for a model side file's text
 *     (tokenizer_config.json, chat_template.jinja; other files unchanged)
 *   template.encodeConversation({ system?, tools?, messages }, { maskHistory }) → { turns: [{ prompt, response }] }
 *     roles: user | assistant | function_call | observation (a leading system message is allowed)
 *   template.encodeOneTurn(conv) → { prompt, response }        (preference / KTO)
 *   template.renderForGeneration(messages, { system, tools }) → prompt ids for chat; special-token
 *     strings inside the content are plain text there (content-text.ts), unlike in training
 *   template.eosId (LLaMA-Factory's replaced eos, e.g. <|im_end|>), template.stopIds
 *
 * Datasets
 *   buildDataset(config, deps) → { kind, train, eval, stats, template }
 *     config: LLaMA-Factory keys — stage (pt | sft | rm | dpo | orpo | simpo | kto), dataset,
 *       eval_dataset, dataset_dir, template, cutoff_len, train_on_prompt, mask_history, packing,
 *       neat_packing, val_size, max_samples, seed, tool_format, default_system, enable_thinking,
 *       preserve_thinking, mix_strategy (concat | interleave_under | interleave_over | interleave_once),
 *       interleave_probs, preprocessing_batch_size; plus `shuffle` (default true: train examples
 *       shuffled with seed; use shuffled(train, seed + epoch) for later epochs).
 *     deps: { tokenizer, readFile(path) → Uint8Array, listFiles?(dir), fetchFile?(repo, path),
 *       listRepoFiles?(repo), template?, log? } — nodeFileAccess() (./node.ts) or
 *       memoryFileAccess({ path: bytes | Blob | string }) give readFile/listFiles.
 *     kind 'lm' (pt, sft):  { input_ids, labels, segment_ids?, position_ids? }
 *       segment_ids: neat_packing only (1..n per packed sample, 0 = padding; no attention across);
 *       position_ids: packed rows (restart per sample).
 *     kind 'pairwise' (rm, dpo, orpo, simpo): { chosen: { input_ids, labels }, rejected: {...} }
 *     kind 'kto': { input_ids, labels, kl_input_ids, kl_labels, kto_tag } (KL row: this prompt
 *       with the previous record's completion, as LLaMA-Factory builds it)
 *     Labels are unshifted (HF convention: the model shifts); -100 = no loss.
 *     Files: json, jsonl, csv, parquet, txt; formats alpaca / sharegpt / openai, tools,
 *     preference and KTO columns; rows with input_ids (labels, attention_mask optional) are used
 *     as already tokenized. Data errors are DataError with file, line/record and field.
 *     Images (columns.images): paths under media_dir (default dataset_dir) or as written, one
 *     <image> per image (checked), URLs refused; with template qwen2_vl and deps.imageProcessor
 *     (stage sft, no packing) each image is processed and its <image> expanded (vision-data.ts),
 *     the example keeps pixels + grids; otherwise refused. Videos and audios are refused.
 *
 * Images (./image, the same code in Node and the browser)
 *   decodeImage(bytes) → { width, height, data: RGB bytes } (PNG, JPEG baseline/progressive;
 *     Pillow's pixels exactly); imageInfo(bytes) → format and size from the header
 *   resizeBicubic(img, w, h): Pillow's Image.resize(..., BICUBIC), byte for byte
 *   processQwen2VLImage(img, qwen2vlImageConfig(preprocessor_config), limits) → { pixelValues, grid }
 *     (LLaMA-Factory's pre-resize, smart_resize, rescale, normalize, patches);
 *     expandQwen2VLImages(messages, grids, mergeSize): <image> → <|vision_start|><|image_pad|>*n<|vision_end|>
 *
 * Batching and preview
 *   collate(examples, batchSize, padId, { padToMultipleOf, seqLen }) → Batch[] (Int32Array
 *     input_ids / labels (-100 padding) / lengths, segment_ids?, position_ids?); collatePairwise
 *     (chosen rows then rejected rows), collateKto (with kl rows and tags).
 *   previewExamples(config, deps, n) → [{ text, segments: [{ text, learned }], input_ids, labels }]
 *     ({ chosen, rejected } for preference stages; kto_tag and kl for KTO).
 *   previewWindow(config, deps, { offset, count }) → { examples, total, stats }: only the window
 *     is tokenized; every record is still checked, so drops are logged as in training.
 */
export { Tokenizer, loadTokenizer, type TokenizerFiles, type StreamDecoder, type SpecialToken } from './tokenizer.ts';
export {
  getTemplate,
  NamedTemplate,
  JinjaChatTemplate,
  UnknownTemplateError,
  UnsupportedTemplateError,
  TEMPLATE_NAMES,
  templateFromConfig,
  savedTokenizerConfig,
  withChatTemplate,
  type TemplateConfig,
  type ChatTemplate,
  type Conversation,
  type Message,
  type Role,
  type Turn,
  type TemplateOptions,
} from './templates.ts';
export { buildDataset, type DatasetStats, type BuiltDataset } from './dataset.ts';
export { exampleKind, type DataConfig, type DataDeps, type ExampleWindow, type ExampleKind, type Stage } from './dataset-config.ts';
export { shuffled, permutation } from './random.ts';
export { padIdFor } from './process.ts';
export { detectAttr } from './sources.ts';
export { IGNORE_INDEX, inferSeqlen, greedyKnapsack, type Example, type LmExample, type PairwiseExample, type KtoExample } from './processor.ts';
export { collate, collatePairwise, collateKto, padRows, isPairwise, isKto, type Batch, type PairwiseBatch, type KtoBatch, type CollateOptions } from './collate.ts';
export { previewExamples, previewWindow, describeTokens, type Preview, type PreviewExample, type PreviewItem, type PreviewSegment } from './preview.ts';
export { memoryFileAccess } from './memory.ts';
export { DataError } from './errors.ts';
export { decodeImage, imageInfo } from './image/decode.ts';
export { resizeBicubic } from './image/resample.ts';
export {
  processQwen2VLImage,
  expandQwen2VLImages,
  qwen2vlImageConfig,
  qwen2vlGrid,
  imageTokenCount,
  LLAMAFACTORY_PIXEL_LIMITS,
  type Qwen2VLImageConfig,
  type PixelLimits,
  type ProcessedImage,
} from './image/qwen2vl.ts';
export { ImageError, type RgbImage, type ImageInfo } from './image/types.ts';
export { parseJsonFile } from './json-file.ts';
export { parseDataFile } from './formats.ts';
export { setLlama3ToolDate } from './tools.ts';
