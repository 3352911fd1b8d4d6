// Tracking files: TensorBoard event files decoded back with a decoder written here (its own
// bitwise CRC32C, its own protobuf reader), running_log.txt, and report_to in configs.
import { mkdtempSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config';
import { crc32c, eventFileName, maskedCrc32c, scalarEvent, tfRecord } from '../src/train/tfevents';
import { RUNNING_LOG, tensorboardScalars, trackingHooks } from '../src/train/tracking';
import type { LogRecord } from '../src/train/trainer';

// ---- an independent reader ---------------------------------------------------------------------

/** CRC32C bit by bit (no table), from the polynomial's definition. */
function crcBitwise(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}
const mask = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) % 2 ** 32;

function readRecords(file: Uint8Array): Uint8Array[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < file.length) {
    const len = Number(view.getBigUint64(at, true));
    expect(view.getUint32(at + 8, true), 'length CRC').toBe(mask(crcBitwise(file.subarray(at, at + 8))));
    const data = file.subarray(at + 12, at + 12 + len);
    expect(view.getUint32(at + 12 + len, true), 'data CRC').toBe(mask(crcBitwise(data)));
    out.push(data);
    at += 16 + len;
  }
  expect(at).toBe(file.length);
  return out;
}

type Field = { field: number; wire: number; value: number | bigint | Uint8Array };
function readProto(bytes: Uint8Array): Field[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  let at = 0;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = bytes[at++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const field = key >> 3, wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1) (fields.push({ field, wire, value: view.getFloat64(at, true) }), (at += 8));
    else if (wire === 5) (fields.push({ field, wire, value: view.getFloat32(at, true) }), (at += 4));
    else if (wire === 2) {
      const len = Number(varint());
      fields.push({ field, wire, value: bytes.subarray(at, at + len) });
      at += len;
    } else throw new Error(`wire type ${wire}`);
  }
  return fields;
}

interface Event { wallTime: number; step: number; fileVersion?: string; scalars: Array<[string, number]> }
function readEvent(bytes: Uint8Array): Event {
  const e: Event = { wallTime: NaN, step: 0, scalars: [] };
  for (const f of readProto(bytes)) {
    if (f.field === 1) e.wallTime = f.value as number;
    if (f.field === 2) e.step = Number(f.value);
    if (f.field === 3) e.fileVersion = new TextDecoder().decode(f.value as Uint8Array);
    if (f.field === 5) {
      for (const v of readProto(f.value as Uint8Array).filter((x) => x.field === 1)) {
        const value = readProto(v.value as Uint8Array);
        const tag = new TextDecoder().decode(value.find((x) => x.field === 1)!.value as Uint8Array);
        e.scalars.push([tag, value.find((x) => x.field === 2)!.value as number]);
      }
    }
  }
  return e;
}

// ---- tests -------------------------------------------------------------------------------------

describe('CRC32C and TFRecord framing', () => {
  it('matches the CRC32C test vectors (RFC 3720 B.4, and "123456789")', () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    const cases: Array<[Uint8Array, number]> = [
      [new Uint8Array(0), 0],
      [new TextEncoder().encode('123456789'), 0xe3069283],
      [new Uint8Array(32), 0x8a9136aa],
      [new Uint8Array(32).fill(0xff), 0x62a8ab43],
      [ascending, 0x46dd794e],
      [ascending.slice().reverse(), 0x113fdb5c],
    ];
    for (const [bytes, crc] of cases) {
      expect(crc32c(bytes)).toBe(crc);
      expect(crcBitwise(bytes)).toBe(crc);
    }
  });

  it('frames random data so an independent reader checks both CRCs', () => {
    const data = Uint8Array.from({ length: 300 }, () => Math.floor(Math.random() * 256));
    expect(maskedCrc32c(data)).toBe(mask(crc32c(data)));
    expect(readRecords(tfRecord(data))).toEqual([data]);
  });

  it('encodes a scalar event: wall time, step, tag and float value', () => {
    const e = readEvent(scalarEvent(1700000000.25, 300, 'train/loss', 1.5));
    expect(e).toEqual({ wallTime: 1700000000.25, step: 300, scalars: [['train/loss', 1.5]] });
    expect(eventFileName(1700000000.9, 'box')).toBe('events.out.tfevents.1700000000.box');
  });
});

const record = (r: Partial<LogRecord>): LogRecord => ({ current_steps: 1, total_steps: 4, lr: 1e-4, epoch: 0.25, percentage: 25, tokens_per_second: 100, elapsed_time: 1, remaining_time: 3, ...r });

describe('trackingHooks', () => {
  it('report_to tensorboard: an event file TensorBoard reads, scalars under HF TensorBoardCallback names', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tracking-'));
    const { config } = parseConfig('report_to: tensorboard\n');
    let t = 1700000000;
    const hooks = await trackingHooks(config, out, { now: () => t++, host: 'testhost' });
    hooks.onStatus('data: 16 training examples');
    hooks.onLog(record({ current_steps: 1, loss: 2.5, grad_norm: 0.75 }));
    hooks.onLog(record({ current_steps: 2, eval_loss: 2.25, epoch: 0.5, 'eval_rewards/accuracies': 0.5 }));
    hooks.onStatus('warning: 3 examples were truncated');
    await hooks.close();

    const dirs = readdirSync(join(out, 'runs'));
    expect(dirs).toHaveLength(1);
    expect(dirs[0]).toMatch(/^[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_testhost$/);
    expect(readdirSync(join(out, 'runs', dirs[0]!))).toEqual(['events.out.tfevents.1700000000.testhost']);
    const events = readRecords(readFileSync(hooks.eventFile!)).map(readEvent);
    expect(events[0]).toEqual({ wallTime: 1700000000, step: 0, fileVersion: 'brain.Event:2', scalars: [] });
    const scalars = events.slice(1).map((e) => [e.step, ...e.scalars[0]!]);
    expect(scalars).toEqual([
      [1, 'train/loss', 2.5],
      [1, 'train/grad_norm', 0.75],
      [1, 'train/learning_rate', Math.fround(1e-4)],
      [1, 'train/epoch', 0.25],
      [2, 'eval/loss', 2.25],
      [2, 'train/epoch', 0.5],
      [2, 'eval/rewards/accuracies', 0.5],
    ]);

    const lines = readFileSync(join(out, RUNNING_LOG), 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^\[INFO\|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] crucible >> TensorBoard event file: .*events\.out\.tfevents\.1700000000\.testhost$/);
    expect(lines[1]).toMatch(/\] crucible >> data: 16 training examples$/);
    expect(lines[2]).toMatch(/\] crucible >> \{'loss': 2.5, 'grad_norm': 0.75, 'learning_rate': 0.0001, 'epoch': 0.25\}$/);
    expect(lines[3]).toMatch(/\] crucible >> \{'eval_loss': 2.25, 'epoch': 0.5, 'eval_rewards\/accuracies': 0.5\}$/);
    expect(lines[4]).toMatch(/^\[WARNING\|.*\] crucible >> 3 examples were truncated$/);
  });

  it('report_to none: running_log.txt only, started afresh each run', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tracking-'));
    const { config } = parseConfig('report_to: none\n');
    for (const message of ['first run', 'second run']) {
      const hooks = await trackingHooks(config, out);
      hooks.onStatus(message);
      await hooks.close();
      expect(hooks.eventFile).toBeNull();
    }
    expect(existsSync(join(out, 'runs'))).toBe(false);
    expect(readFileSync(join(out, RUNNING_LOG), 'utf8')).toMatch(/^\[INFO\|[^\]]+\] crucible >> second run\n$/);
  });

  it('train records leave progress bookkeeping out', () => {
    expect(tensorboardScalars(record({ loss: 1 })).map(([tag]) => tag)).toEqual(['train/loss', 'train/learning_rate', 'train/epoch']);
  });
});

describe('report_to in configs', () => {
  it('defaults to none; other trackers are accepted with a notice of what is written instead', () => {
    expect(parseConfig('').config.report_to).toEqual(['none']);
    const { config, notices } = parseConfig('report_to: wandb\n');
    expect(config.report_to).toEqual(['wandb']);
    expect(notices).toContain(
      'note: report_to wandb: Crucible sends runs to no tracking service; it writes trainer_log.jsonl and running_log.txt in output_dir (report_to: tensorboard adds TensorBoard event files)',
    );
    expect(parseConfig('report_to: [tensorboard, mlflow]\n').notices.join('\n')).toMatch(/report_to mlflow: .*, and TensorBoard event files under output_dir\/runs/);
    expect(parseConfig('report_to: tensorboard\n').notices).toEqual([]);
  });

  it('an unknown tracker is an error with a suggestion', () => {
    expect(() => parseConfig('report_to: tensorbord\n')).toThrow(ConfigError);
    expect(() => parseConfig('report_to: tensorbord\n')).toThrow(/report_to: unknown tracker "tensorbord" \(did you mean "tensorboard"\?\)/);
  });
});
