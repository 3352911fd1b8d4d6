// The library API as the README shows it: a user's script trains and chats through Session.
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { Session, buildDataset, configFromObject, dirFiles, nodeFileAccess, nodeGpu, trainOptionsFromConfig } from '../src/node';
import type { LogRecord } from '../src/node';
import type { TokenExample } from '../src/train/batches';
import { openSafetensors } from '../src/model/safetensors';

it('README flow: open, build data, train, chat, export a PEFT adapter', async () => {
  const gpu = await nodeGpu({ warn: () => {} });
  const session = await Session.open(gpu, dirFiles(join(import.meta.dirname, 'fixtures/tiny-chat')));
  const { config } = configFromObject({
    stage: 'sft', dataset: 'identity', dataset_dir: join(import.meta.dirname, 'fixtures/tiny-chat-data'), cutoff_len: 32,
    finetuning_type: 'lora', lora_rank: 2, per_device_train_batch_size: 2, max_steps: 2, logging_steps: 1, learning_rate: 1e-2,
  });
  const data = await buildDataset(config, { tokenizer: session.tokenizer, ...nodeFileAccess() });
  if (data.kind !== 'lm') throw new Error('sft gives token rows');
  const logs: LogRecord[] = [];
  await session.train(trainOptionsFromConfig(config), data.train as TokenExample[], [], null, { onLog: (r) => logs.push(r) });
  expect(logs.map((l) => l.current_steps)).toEqual([1, 2]);
  let streamed = '';
  const turn = await session.chat([{ role: 'user', content: 'hi' }], { maxNewTokens: 3 }, (t) => { streamed += t; });
  expect(turn.completionTokens).toBeGreaterThan(0);
  expect(streamed).toBe(turn.text);
  const peft = await session.exportAdapter('tiny-chat');
  expect(JSON.parse(peft['adapter_config.json'])).toMatchObject({ peft_type: 'LORA', r: 2, base_model_name_or_path: 'tiny-chat' });
  const bytes = peft['adapter_model.safetensors'];
  const f = await openSafetensors({ name: 'adapter', size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
  expect(f.tensors.size).toBe(2 * 7 * 2); // A and B for 7 modules in 2 layers
  session.release();
});
