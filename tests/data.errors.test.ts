// Errors name the file, the line or record, and the field; empty results explain why.
import { describe, expect, it } from 'vitest';
import { buildDataset, DataError, memoryFileAccess, previewExamples, type DataConfig } from '../src/data/index.ts';
import { BAD, deps, FORMATS, tokenizerFor } from './fixtures/data/helpers.ts';

const tok = tokenizerFor('qwen3');
const base: DataConfig = { stage: 'sft', dataset_dir: BAD, template: 'qwen3_nothink', cutoff_len: 256 };
async function error(c: DataConfig): Promise<DataError> {
  try {
    await buildDataset({ ...base, ...c }, deps(tok));
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected an error');
}

describe('malformed files and records', () => {
  it('a malformed JSON line names the file and line', async () => {
    const e = await error({ dataset: 'bad_jsonl' });
    expect(e.message).toMatch(/bad\.jsonl, line 3: malformed JSON line/);
    expect(e.location.line).toBe(3);
  });

  it('a JSON syntax error names the line', async () => {
    const e = await error({ dataset: 'bad_json' });
    expect(e.message).toMatch(/bad\.json, line 3: malformed JSON/);
  });

  it('a record that is not an object names its index and line', async () => {
    const e = await error({ dataset: 'bad_record' });
    expect(e.message).toMatch(/bad_record\.json, line 3, record 1: each record must be a JSON object/);
  });

  it('csv: an unterminated quote names the line', async () => {
    const e = await error({ dataset: 'bad_csv' });
    expect(e.message).toMatch(/bad\.csv, line 3: unterminated quoted field/);
  });

  it('a message without its role field names record and field', async () => {
    const e = await error({ dataset: 'bad_message' });
    expect(e.message).toMatch(/bad_message\.json, line 3, record 1, field "conversations\[1\]\.from": must be a string role, got undefined/);
    expect(e.location).toMatchObject({ index: 1, field: 'conversations[1].from' });
  });

  it('a field of the wrong type names record and field', async () => {
    const e = await error({ dataset: 'bad_field_type' });
    expect(e.message).toMatch(/bad_field_type\.jsonl, line 2, record 1, field "instruction": must be a string, got array/);
  });

  it('pre-tokenized rows with a non-integer id', async () => {
    const e = await error({ dataset: 'bad_tokens' });
    expect(e.message).toMatch(/bad_tokens\.jsonl, line 2, record 1, field "input_ids": must be a list of integers; item 1 is "x"/);
  });

  it('an invalid function call names the record', async () => {
    const e = await error({ dataset: 'bad_call' });
    expect(e.message).toMatch(/bad_call\.json, line 2, record 0: function_call content is not valid JSON/);
  });

  it('a missing file', async () => {
    const e = await error({ dataset: 'missing_file' });
    expect(e.message).toMatch(/dataset "missing_file" \(.*nope\.json\): cannot read the file: ENOENT/);
  });

  it('unsupported file types list the supported ones', async () => {
    const files = { 'd/dataset_info.json': '{"x": {"file_name": "x.arrow"}}' };
    await expect(buildDataset({ ...base, dataset: 'x', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess(files) })).rejects.toThrow(/x\.arrow: unsupported file type; allowed: json, jsonl, csv, parquet, txt/);
  });

  it('a bad dataset_info.json entry names the key', async () => {
    const files = { 'd/dataset_info.json': '{"x": {"file_name": "x.json", "columns": {"promt": "q"}}}' };
    await expect(buildDataset({ ...base, dataset: 'x', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess(files) })).rejects.toThrow(/dataset_info\.json, field "x\.columns": unknown column key "promt"/);
  });
});

describe('nothing survives: the error explains why', () => {
  it('all conversations incomplete', async () => {
    const e = await error({ dataset: 'all_odd' });
    expect(e.message).not.toMatch(/Cannot find valid samples/);
    expect(e.message).toMatch(/no training examples survive for stage "sft"/);
    expect(e.message).toMatch(/dataset "all_odd" .*all_odd\.json.*: 2 records, 0 converted/);
    expect(e.message).toMatch(/2 dropped: needs complete \(user, assistant\) turns: "conversations" has 1 messages \(odd\).*\(first: .*all_odd\.json, line 2, record 0\)/);
  });

  it('no response column for sft points to stage pt', async () => {
    const e = await error({ dataset: 'no_output' });
    expect(e.message).toMatch(/2 dropped: no response to learn .* for raw text use stage pt/);
  });

  it('pretraining text shorter than one packed block', async () => {
    const e = await buildDataset({ stage: 'pt', dataset: 'wiki_txt', dataset_dir: FORMATS, cutoff_len: 4096 }, deps(tok)).catch((x) => x as Error);
    expect((e as Error).message).toMatch(/less text than one block — lower cutoff_len or set packing: false/);
  });

  it('cutoff_len that leaves no room to learn anything', async () => {
    const files = { 'd/dataset_info.json': '{"x": {"file_name": "x.json"}}', 'd/x.json': JSON.stringify([{ instruction: 'a long instruction here', output: 'b' }]) };
    await expect(
      buildDataset({ ...base, dataset: 'x', dataset_dir: 'd', cutoff_len: 2, train_on_prompt: false }, { tokenizer: tok, ...memoryFileAccess(files) }),
    ).rejects.toThrow(/no training example has a token to learn/);
  });

  it('preview surfaces the same errors', async () => {
    await expect(previewExamples({ ...base, dataset: 'all_odd' }, deps(tok), 2)).rejects.toThrow(/no training examples survive/);
  });
});

describe('configuration errors', () => {
  it('unknown template lists the valid names', async () => {
    await expect(buildDataset({ ...base, dataset: 'no_output', template: 'qwen9' }, deps(tok))).rejects.toThrow(/unknown template "qwen9"\. Valid templates: .*chatml.*llama3.*qwen3_nothink/);
  });

  it('val_size together with eval_dataset is rejected, as in LLaMA-Factory', async () => {
    await expect(buildDataset({ ...base, dataset: 'no_output', eval_dataset: 'no_output', val_size: 0.1 }, deps(tok))).rejects.toThrow(/val_size.*eval_dataset/);
  });

  it('streaming and unknown stages are rejected', async () => {
    await expect(buildDataset({ ...base, dataset: 'x', streaming: true }, deps(tok))).rejects.toThrow(/streaming is not supported/);
    await expect(buildDataset({ ...base, dataset: 'x', stage: 'ppp' as never }, deps(tok))).rejects.toThrow(/unknown stage "ppp"; valid: pt, sft/);
  });
});
