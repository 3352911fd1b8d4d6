/**
 * LLaMA-Factory's template definition: slots per role (text with a {{content}} placeholder,
 * a named token, bos or eos) and the flags that change how a conversation is encoded, with
 * register_template's defaults.
 */

interface BosSlot { bos: true }
interface EosSlot { eos: true }
export type Slot = string | { token: string } | BosSlot | EosSlot;
export const BOS: BosSlot = { bos: true };
export const EOS: EosSlot = { eos: true };

export interface TemplateDef {
  user: Slot[];
  assistant: Slot[];
  system: Slot[];
  function: Slot[];
  observation: Slot[];
  prefix: Slot[];
  /** Phi-4-mini: the tools JSON text goes into these slots as is, instead of through a tool format. */
  tools: Slot[] | null;
  defaultSystem: string;
  stopWords: string[];
  thoughtWords: [string, string];
  toolCallWords: [string, string];
  efficientEos: boolean;
  replaceEos: boolean;
  toolFormat: string;
  functionToolFormat: string;
  reasoning: boolean;
  /** LLaMA-Factory's Llama2Template: the system text is fused into the first user message. */
  fuseSystem: boolean;
  /** A saved tokenizer gets this template as its chat_template even when it has one. */
  replaceJinjaTemplate: boolean;
}

export type TemplateSpec = Partial<TemplateDef>;

/** A definition with LLaMA-Factory's register_template defaults filled in. */
export function defineTemplate(s: TemplateSpec): TemplateDef {
  const efficientEos = s.efficientEos ?? false;
  const defaultSlots: Slot[] = efficientEos ? ['{{content}}'] : ['{{content}}', EOS];
  return {
    user: s.user ?? ['{{content}}'],
    assistant: s.assistant ?? defaultSlots,
    system: s.system ?? ['{{content}}'],
    function: s.function ?? s.assistant ?? defaultSlots,
    observation: s.observation ?? s.user ?? ['{{content}}'],
    prefix: s.prefix ?? [],
    tools: s.tools ?? null,
    defaultSystem: s.defaultSystem ?? '',
    stopWords: s.stopWords ?? [],
    thoughtWords: s.thoughtWords ?? ['<think>\n', '\n</think>\n\n'],
    toolCallWords: s.toolCallWords ?? ['<tool_call>', '</tool_call>'],
    efficientEos,
    replaceEos: s.replaceEos ?? false,
    toolFormat: s.toolFormat ?? 'default',
    functionToolFormat: s.functionToolFormat ?? s.toolFormat ?? 'default',
    reasoning: s.reasoning ?? false,
    fuseSystem: s.fuseSystem ?? false,
    replaceJinjaTemplate: s.replaceJinjaTemplate ?? false,
  };
}
