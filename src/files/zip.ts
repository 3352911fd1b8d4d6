// A zip archive of files held in memory, stored without compression (the app's run folder: a
// YAML, a dataset_info.json and the data files). Local headers, the central directory and its end
// record as PKWARE's APPNOTE describes them; names are UTF-8 (flag bit 11). No ZIP64: an archive
// of 4 GiB or more, or of 65535 files or more, is refused.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, the zip and gzip checksum). */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export interface ZipEntry {
  /** Path inside the archive, '/'-separated. */
  name: string;
  data: Uint8Array | string;
}

const UTF8_NAMES = 0x0800;
/** MS-DOS time of 1980-01-01 00:00: fixed, so an archive of the same files has the same bytes. */
const DOS_DATE = (0 << 9) | (1 << 5) | 1;

export function zipStore(entries: readonly ZipEntry[]): Uint8Array {
  if (entries.length >= 0xffff) throw new Error(`zip: ${entries.length} files are more than a zip without ZIP64 holds`);
  const enc = new TextEncoder();
  const seen = new Set<string>();
  const files = entries.map((e) => {
    if (!e.name || e.name.startsWith('/') || e.name.split('/').includes('..')) throw new Error(`zip: "${e.name}" is not a relative path inside the archive`);
    if (seen.has(e.name)) throw new Error(`zip: "${e.name}" is given twice`);
    seen.add(e.name);
    const data = typeof e.data === 'string' ? enc.encode(e.data) : e.data;
    return { name: enc.encode(e.name), data, crc: crc32(data) };
  });
  const localSize = files.reduce((n, f) => n + 30 + f.name.length + f.data.length, 0);
  const centralSize = files.reduce((n, f) => n + 46 + f.name.length, 0);
  const total = localSize + centralSize + 22;
  if (total > 0xffffffff) throw new Error(`zip: ${total} bytes are more than a zip without ZIP64 holds (4 GiB)`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  const u16 = (v: number) => {
    view.setUint16(at, v, true);
    at += 2;
  };
  const u32 = (v: number) => {
    view.setUint32(at, v >>> 0, true);
    at += 4;
  };
  const bytes = (b: Uint8Array) => {
    out.set(b, at);
    at += b.length;
  };
  const offsets: number[] = [];
  for (const f of files) {
    offsets.push(at);
    u32(0x04034b50);
    u16(10); // version needed: 1.0, stored
    u16(UTF8_NAMES);
    u16(0); // method: stored
    u16(0);
    u16(DOS_DATE);
    u32(f.crc);
    u32(f.data.length);
    u32(f.data.length);
    u16(f.name.length);
    u16(0);
    bytes(f.name);
    bytes(f.data);
  }
  const central = at;
  files.forEach((f, i) => {
    u32(0x02014b50);
    u16(0x031e); // made by: Unix, spec 3.0
    u16(10);
    u16(UTF8_NAMES);
    u16(0);
    u16(0);
    u16(DOS_DATE);
    u32(f.crc);
    u32(f.data.length);
    u32(f.data.length);
    u16(f.name.length);
    u16(0); // extra
    u16(0); // comment
    u16(0); // disk
    u16(0); // internal attributes
    u32(0o100644 << 16); // external: a regular file, rw-r--r--
    u32(offsets[i]!);
    bytes(f.name);
  });
  const centralBytes = at - central;
  u32(0x06054b50);
  u16(0);
  u16(0);
  u16(files.length);
  u16(files.length);
  u32(centralBytes);
  u32(central);
  u16(0);
  return out;
}
