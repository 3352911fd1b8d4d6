// The engine as the hosts use it: one loaded model with its tokenizer, an optional adapter,
// training and chat. The CLI (Node) and the app's Web Worker both drive a Session; nothing here
// knows which host it runs in.

import type { Gpu } from '../gpu/runtime';
import {
  decodeImage, getTemplate, ImageError, LLAMAFACTORY_PIXEL_LIMITS, loadTokenizer, parseJsonFile, processQwen2VLImage,
  type ChatTemplate, type Message, type PixelLimits, type Qwen2VLImageConfig, type TemplateOptions, type Tokenizer,
} from '../data';
import { IMAGE_MARK } from '../data/content-text';
import { loadImageProcessor } from './image-processor';
import type { PeftAdapter } from '../model/adapter';
import { loadAdapter } from '../model/adapters';
import { contextLength, Generator, type SamplingOptions } from '../model/generate';
import { Model } from '../model/model';
import { expandImagePads, type PromptImage } from '../model/prompt-images';
import type { ByteSource } from '../model/safetensors';
import type { ModelFiles, WeightFormat } from '../model/weights';
import { Trainer, type RunStore, type TrainExample, type TrainHooks, type TrainOptions } from '../train/trainer';
import { answerBudget, checkPromptChars, checkPromptTokens } from './prompt-fit';

export interface OpenOptions {
  /** quantization_bit: 4 or 8 quantizes the base on upload (QLoRA); otherwise f32, or f16 where asked. */
  quantizationBit?: 4 | 8 | null;
  /** Base linear weights in f16 (bf16 / fp16: basePrecision, precision.ts); f16 products on a device with shader-f16. */
  f16?: boolean;
  onProgress?: (loaded: number, total: number, name: string) => void;
}

export interface ChatOptions extends Omit<SamplingOptions, 'stopIds' | 'signal'> {
  template?: string | null;
  templateOptions?: TemplateOptions;
  system?: string;
  /** false: the base model alone, for comparing with the tuned one. */
  useAdapter?: boolean;
  /** Text that ends the answer (not included). */
  stop?: string[];
  /** Encoded image files (PNG, JPEG), one per IMAGE_MARK in the messages, in order (vision-language models). */
  images?: readonly Uint8Array[];
  /** LLaMA-Factory's image_max_pixels / image_min_pixels for those images (its defaults when absent). */
  pixelLimits?: PixelLimits;
  signal?: AbortSignal;
}

export interface ChatTurnResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length';
}

export class Session {
  adapter: PeftAdapter | null = null;
  private generator: Generator | null = null;

  private constructor(
    readonly gpu: Gpu, readonly model: Model, readonly tokenizer: Tokenizer, readonly name: string,
    /** The image processor's settings (preprocessor_config.json) of a vision-language model. */
    readonly imageConfig: Qwen2VLImageConfig | null,
  ) {}

  static async open(gpu: Gpu, files: ModelFiles, opts: OpenOptions = {}): Promise<Session> {
    const format: WeightFormat = opts.quantizationBit === 4 ? 'q4' : opts.quantizationBit === 8 ? 'q8' : opts.f16 ? 'f16' : 'f32';
    const tokenizer = await loadModelTokenizer(files);
    const model = await Model.load(gpu, files, { format, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    const imageConfig = await loadImageProcessor(files, model.spec.vision);
    return new Session(gpu, model, tokenizer, files.name, imageConfig);
  }

  template(name?: string | null, opts: TemplateOptions = {}): ChatTemplate {
    return getTemplate(name ?? undefined, this.tokenizer, opts);
  }

  async loadAdapter(configJson: string, weights: ByteSource): Promise<void> {
    this.adapter?.release();
    this.adapter = await loadAdapter(this.model, configJson, weights);
    this.generator?.reset();
  }

  /** Train (LoRA: a fresh or continued adapter becomes this session's adapter). */
  /**
   * Train on token rows (pt, sft), preference pairs (rm, dpo) or KTO examples. `onDone` runs
   * after the last step, before the trainer's buffers are freed (save what it produced there).
   */
  async train(opts: TrainOptions, train: readonly TrainExample[], evalSet: readonly TrainExample[], store: RunStore | null,
    hooks: TrainHooks & { resumeFrom?: string; onDone?: (trainer: Trainer) => Promise<void> } = {}): Promise<Trainer> {
    if (this.adapter && (opts.finetuningType === 'oft' || (opts.finetuningType === 'lora' && !opts.initialAdapter))) {
      this.adapter.release();
      this.adapter = null;
    }
    const trainer = await Trainer.create(this.model, train, evalSet, opts, this.tokenizer.padId ?? this.tokenizer.eosId ?? 0);
    this.adapter = trainer.adapter;
    this.generator?.reset();
    try {
      if (hooks.resumeFrom && store) await trainer.resume(store, hooks.resumeFrom);
      await trainer.run(store, hooks);
      await hooks.onDone?.(trainer);
    } finally {
      trainer.release();
      this.generator?.reset();
    }
    return trainer;
  }

  /** Tokens of prompt plus answer this session can hold. */
  get contextLength(): number {
    return contextLength(this.model);
  }

  /** Refuses messages too long for the context by their length alone (no tokenising; throws ContextOverflowError). */
  checkMessageLength(messages: readonly Message[], system?: string): void {
    checkPromptChars(messageChars(messages, system), this.contextLength, this.tokenizer);
  }

  /**
   * One assistant answer to a conversation, streamed through onText. Messages that do not fit the
   * context throw ContextOverflowError before any heavy work; the answer ends at maxNewTokens or
   * where the context does, whichever comes first (finishReason 'length').
   */
  async chat(messages: Message[], opts: ChatOptions, onText: (piece: string) => boolean | void): Promise<ChatTurnResult> {
    const context = this.contextLength;
    this.checkMessageLength(messages, opts.system);
    await checkPromptTokens([opts.system ?? '', ...messages.map((m) => m.content)].join('\n'), context, this.tokenizer, opts.signal);
    const images = await this.promptImages(messages, opts);
    const template = this.template(opts.template, opts.templateOptions);
    const rendered = template.renderForGeneration(messages, opts.system !== undefined ? { system: opts.system } : {});
    const v = this.model.spec.vision;
    const prompt = v ? expandImagePads(rendered, images, v.imageTokenId, v.mergeSize) : rendered;
    const maxNewTokens = answerBudget(prompt.length, opts.maxNewTokens, context);
    this.generator ??= new Generator(this.model);
    const decoder = this.tokenizer.createStreamDecoder();
    let text = '';
    let completion = 0;
    let finish: 'stop' | 'length' = 'length';
    const run = async () => {
      for await (const id of this.generator!.generate(prompt, { ...opts, maxNewTokens, stopIds: template.stopIds, ...(opts.signal ? { signal: opts.signal } : {}) }, images)) {
        completion++;
        const piece = decoder.push(id);
        if (!piece) continue;
        const stopAt = firstStop(text + piece, opts.stop ?? [], text.length);
        if (stopAt >= 0) {
          const tail = (text + piece).slice(text.length, stopAt);
          if (tail) onText(tail);
          text = (text + piece).slice(0, stopAt);
          finish = 'stop';
          return;
        }
        text += piece;
        if (onText(piece) === false) return;
      }
      if (completion < maxNewTokens) finish = 'stop';
      const rest = decoder.flush();
      if (rest) {
        text += rest;
        onText(rest);
      }
    };
    // the generator's cache holds keys/values of whichever weights ran last
    if (opts.useAdapter === false && this.adapter) {
      this.generator.reset();
      await this.adapter.withDisabled(run);
      this.generator.reset();
    } else await run();
    return { text, promptTokens: prompt.length, completionTokens: completion, finishReason: finish };
  }

  /**
   * The messages' images through the model's image processor (after LLaMA-Factory's resizing), in
   * order; throws ImageError for images a model cannot take or that cannot be read.
   */
  private async promptImages(messages: readonly Message[], opts: ChatOptions): Promise<PromptImage[]> {
    const files = opts.images ?? [];
    const marks = [opts.system ?? '', ...messages.map((m) => m.content)].reduce((n, c) => n + c.split(IMAGE_MARK).length - 1, 0);
    if (!files.length && !marks) return [];
    if (!this.imageConfig) throw new ImageError(`${this.name} has no vision tower: it cannot take images (a vision-language model such as Qwen2-VL can)`);
    if (marks !== files.length) throw new ImageError(`the messages have ${marks} place(s) for images but ${files.length} image(s) came with them`);
    const out: PromptImage[] = [];
    for (const [i, bytes] of files.entries()) {
      try {
        const p = processQwen2VLImage(await decodeImage(bytes), this.imageConfig, opts.pixelLimits ?? LLAMAFACTORY_PIXEL_LIMITS);
        out.push({ pixels: p.pixelValues, grid: p.grid });
      } catch (e) {
        throw e instanceof ImageError ? new ImageError(`image ${i + 1}: ${e.message}`) : e;
      }
    }
    return out;
  }

  async exportAdapter(baseModel: string | null): Promise<{ 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array }> {
    if (!this.adapter) throw new Error('there is no adapter to export: train one or load one first');
    return { 'adapter_config.json': this.adapter.configJson(baseModel), 'adapter_model.safetensors': await this.adapter.safetensors() };
  }

  /** Frees the generator, the adapter and the model's weights. */
  release(): void {
    this.generator?.release();
    this.adapter?.release();
    this.model.release();
  }
}

function messageChars(messages: readonly Message[], system?: string): number {
  return messages.reduce((n, m) => n + m.content.length, system?.length ?? 0);
}

/** Index of the earliest stop string that ends after `from`, or -1. */
function firstStop(text: string, stops: readonly string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s, Math.max(0, from - s.length + 1));
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

export async function loadModelTokenizer(files: ModelFiles): Promise<Tokenizer> {
  if (!(await files.exists('tokenizer.json'))) throw new Error(`${files.name}: tokenizer.json is missing (only fast-tokenizer checkpoints are supported)`);
  const json = async (p: string) => ((await files.exists(p)) ? parseJsonFile<object>(await files.readText(p), `${files.name}/${p}`) : undefined);
  const tokenizerConfig = await json('tokenizer_config.json');
  const generationConfig = await json('generation_config.json');
  const chatTemplate = (await files.exists('chat_template.jinja')) ? await files.readText('chat_template.jinja') : undefined;
  return loadTokenizer({
    tokenizerJson: (await json('tokenizer.json'))!,
    ...(tokenizerConfig ? { tokenizerConfig } : {}),
    ...(generationConfig ? { generationConfig } : {}),
    ...(chatTemplate ? { chatTemplate } : {}),
  });
}
