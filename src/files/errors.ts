// A failure to store the user's files (disk full, quota, permissions), said as what and where.

export class StorageError extends Error {
  override name = 'StorageError';
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < BYTE_UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${BYTE_UNITS[i]}`;
}
