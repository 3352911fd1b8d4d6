/**
 * LLaMA-Factory template names Crucible knows but does not offer, each refused with its reason
 * rather than as an unknown name: templates of multimodal models, and templates of text model
 * families whose architectures Crucible does not run.
 */

const MULTIMODAL = new Set([
  'dots_ocr', 'ernie_vl', 'gemma3n', 'gemma4', 'gemma4n', 'glm4v', 'glm4_5v', 'glm_ocr', 'granite3_vision',
  'intern_vl', 'intern_s1', 'keye_vl', 'kimi_vl', 'lfm2_vl', 'llava', 'llava_next', 'llava_next_llama3',
  'llava_next_mistral', 'llava_next_qwen', 'llava_next_video', 'llava_next_video_mistral', 'llava_next_video_yi',
  'llava_next_yi', 'mimo_vl', 'minicpm_o', 'minicpm_v', 'minicpm_v_4_6', 'ministral3', 'mllama', 'moss_vl',
  'paligemma', 'paligemma_chat', 'pixtral', 'qwen2_audio', 'qwen2_omni', 'qwen3_omni',
  'qwen3_omni_nothink', 'qwen3_vl', 'qwen3_vl_nothink', 'video_llava', 'yi_vl', 'youtu_vl',
]);

/** Template name -> the model family it is for. */
const OTHER_FAMILIES: Record<string, string> = {
  aeva: 'Aeva (GLM-4.7)',
  bailing: 'Ling (Bailing)',
  bailing_v2: 'Ling 2.0',
  chatglm3: 'ChatGLM3',
  cpm4: 'MiniCPM4',
  dbrx: 'DBRX',
  ernie: 'ERNIE 4.5',
  ernie_nothink: 'ERNIE 4.5',
  falcon_h1: 'Falcon-H1',
  glm4: 'GLM-4',
  glm4_7: 'GLM-4.7',
  glm4_moe: 'GLM-4.5',
  glmz1: 'GLM-Z1',
  hunyuan: 'Hunyuan',
  hunyuan_small: 'HY-MT1.5',
  hy3: 'Hy3',
  hy_dense_1_8b: 'Hy-MT2',
  hy_dense_7b: 'Hy-MT2',
  index: 'Index',
  intern2: 'InternLM2',
  mimo_v2: 'MiMo-V2',
  minimax1: 'MiniMax-M1',
  minimax2: 'MiniMax-M2',
  moonlight: 'Moonlight',
  seed_oss: 'Seed-OSS',
  starchat: 'StarChat',
  telechat2: 'TeleChat2',
  youtu: 'Youtu-LLM',
  yuan: 'Yuan2',
};

/** Why `template: name` is refused, or undefined when Crucible does not know the name. */
export function unsupportedReason(name: string): string | undefined {
  if (MULTIMODAL.has(name)) return `template "${name}" is LLaMA-Factory's template for a multimodal model; of the vision-language families Crucible trains Qwen2-VL only (template qwen2_vl)`;
  const family = Object.hasOwn(OTHER_FAMILIES, name) ? OTHER_FAMILIES[name] : undefined;
  if (family) return `template "${name}" is LLaMA-Factory's template for ${family} models, an architecture Crucible does not run`;
  return undefined;
}
