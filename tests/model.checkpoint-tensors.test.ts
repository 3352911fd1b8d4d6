// Resume checks a checkpoint's tensors against the run's before writing them to the GPU: a changed
// lora_rank, lora_target or model is named instead of failing as "WebGPU error: Write range".
import { describe, expect, it } from 'vitest';
import { checkCheckpointTensors, type ExpectedTensor } from '../src/model/checkpoint-tensors';
import { encodeSafetensors, openSafetensors, type SafetensorsFile } from '../src/model/safetensors';

const Q = 'base_model.model.model.layers.0.self_attn.q_proj';
const V = 'base_model.model.model.layers.0.self_attn.v_proj';

/** A LoRA checkpoint file of rank r on q_proj and v_proj of a 64-wide model. */
async function loraFile(r: number, name = 'out/checkpoint-10/adapter_model.safetensors', suffix = ''): Promise<SafetensorsFile> {
  const t = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0]! * shape[1]!) });
  const bytes = encodeSafetensors({
    [`${Q}.lora_A.weight${suffix}`]: t([r, 64]),
    [`${Q}.lora_B.weight${suffix}`]: t([64, r]),
    [`${V}.lora_A.weight${suffix}`]: t([r, 64]),
    [`${V}.lora_B.weight${suffix}`]: t([64, r]),
  });
  return openSafetensors({ name, size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
}

const lora = (r: number, modules = [Q, V], suffix = ''): ExpectedTensor[] =>
  modules.flatMap((m) => [{ name: `${m}.lora_A.weight${suffix}`, shape: [r, 64] }, { name: `${m}.lora_B.weight${suffix}`, shape: [64, r] }]);

/** The check as a function for expect(...).toThrow. */
async function checking(file: SafetensorsFile | Promise<SafetensorsFile>, expected: ExpectedTensor[]): Promise<() => void> {
  const f = await file;
  return () => checkCheckpointTensors(f, expected);
}

describe('checkCheckpointTensors', () => {
  it('accepts the tensors of the same settings', async () => {
    expect(await checking(loraFile(8), lora(8))).not.toThrow();
  });

  it('a different lora_rank names the tensor, both shapes and the key', async () => {
    expect(await checking(loraFile(8), lora(16))).toThrow(
      `out/checkpoint-10/adapter_model.safetensors: tensor ${Q}.lora_A.weight is [8, 64] in the checkpoint, this run expects [16, 64]: `
        + 'lora_rank changed since the checkpoint was saved (it has rank 8, this run 16); '
        + 'resume with the settings the checkpoint was saved with, or start afresh with overwrite_output_dir: true (or another output_dir)',
    );
  });

  it('optimizer moments too', async () => {
    const opt = await loraFile(4, 'out/checkpoint-10/optimizer.safetensors', '.exp_avg');
    expect(await checking(opt, lora(8, [Q, V], '.exp_avg'))).toThrow(/optimizer\.safetensors: tensor .*q_proj\.lora_A\.weight\.exp_avg is \[4, 64\] in the checkpoint, this run expects \[8, 64\]: lora_rank changed .*\(it has rank 4, this run 8\)/);
  });

  it('a model of another width', async () => {
    const wider = lora(8).map((t) => ({ ...t, shape: t.shape.map((d) => (d === 64 ? 128 : d)) }));
    expect(await checking(loraFile(8), wider)).toThrow(/is \[8, 64\] in the checkpoint, this run expects \[8, 128\]: the model differs from the one the checkpoint was trained on/);
  });

  it('lora_target narrowed or widened', async () => {
    expect(await checking(loraFile(8), lora(8, [Q]))).toThrow(/holds tensor .*v_proj\.lora_A\.weight, which this run does not train: lora_target changed/);
    const k = 'base_model.model.model.layers.0.self_attn.k_proj';
    expect(await checking(loraFile(8), lora(8, [Q, V, k]))).toThrow(/has no tensor .*k_proj\.lora_A\.weight, which this run trains: lora_target changed/);
  });

  it('use_dora and full / freeze settings', async () => {
    const dora = [...lora(8), { name: `${Q}.lora_magnitude_vector`, shape: [64] }];
    expect(await checking(loraFile(8), dora)).toThrow(/which this run trains: use_dora changed/);
    expect(await checking(loraFile(8), [...lora(8), { name: 'model.layers.1.mlp.up_proj.weight', shape: [64, 64] }])).toThrow(
      /which this run trains: finetuning_type or freeze_trainable_layers/,
    );
  });
});

describe('a truncated checkpoint file', () => {
  it('names the file once and says it is truncated', async () => {
    const bytes = encodeSafetensors({ m: { dtype: 'F32', shape: [4, 8], data: new Float32Array(32) } });
    const cut = bytes.subarray(0, bytes.length - 100);
    const source = { name: 'out/checkpoint-2/optimizer.safetensors', size: cut.length, read: async (o: number, n: number) => cut.subarray(o, o + n) };
    await expect(openSafetensors(source)).rejects.toThrow(
      new RegExp(`^out/checkpoint-2/optimizer\\.safetensors: tensor m F32\\[4,8\\] ends at byte ${bytes.length}, past the end of the file \\(${cut.length} bytes\\): the file is truncated$`),
    );
  });
});
