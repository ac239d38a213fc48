import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import writeFileAtomicLib from 'write-file-atomic';

/**
 * Writes a file atomically (write-file-atomic: the text goes to a temporary file beside it, is
 * fsynced, and is renamed over `path`), so a crash leaves either the old or the new file, never
 * a torn one.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomicLib(path, text, { mode });
}

/** The file's text, or undefined when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Serialises saves of one JSON document: every `save()` resolves once a write that began
 * after the call has reached the disk. Saves that arrive while a write is running share the
 * next write, so a burst of changes costs two writes, not one per change.
 */
export class JsonFile<T> {
  private writing = false;
  private waiting: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(
    readonly path: string,
    private readonly snapshot: () => T,
  ) {}

  save(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting;
        this.waiting = [];
        try {
          await writeFileAtomic(this.path, JSON.stringify(this.snapshot(), null, 1) + '\n');
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }
}
