// First-come first-served admission: at most `concurrency` generations run at once, the rest
// wait in arrival order; a waiter whose client leaves is dropped from the line.

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
}

export class FairQueue {
  private running = 0;
  private readonly line: Waiter[] = [];

  constructor(
    readonly concurrency = 1,
    readonly maxWaiting = 64,
  ) {
    if (!(concurrency >= 1)) throw new RangeError('concurrency must be >= 1');
  }

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    return this.line.length;
  }

  /** Wait for a slot; resolves with the function that gives it back (call it exactly once). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.concurrency && this.line.length === 0) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.line.length >= this.maxWaiting) {
      return Promise.reject(new QueueFullError(`${this.line.length} requests are already waiting`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        reject,
      };
      const onAbort = () => {
        const i = this.line.indexOf(waiter);
        if (i >= 0) this.line.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.line.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.line.shift();
      if (next) next.resolve(this.releaser());
      else this.running--;
    };
  }
}
