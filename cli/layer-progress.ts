/**
 * A pull's progress on stderr: on a terminal, a line per layer with a bar, redrawn in place ten
 * times a second; otherwise plain lines, one per state change and one every 5 s per layer that
 * is moving, as Docker prints when its output is not a terminal.
 */
import type { LayerState, PullProgress } from '../registry/pull.js';

const WORDS: Record<LayerState, string> = {
  waiting: 'Waiting',
  exists: 'Already exists',
  downloading: 'Downloading',
  downloaded: 'Download complete',
  applying: 'Extracting',
  complete: 'Pull complete',
};

function human(n: number): string {
  return n < 1e6 ? `${(n / 1e3).toFixed(1)}kB` : `${(n / 1e6).toFixed(1)}MB`;
}

interface Layer {
  id: string;
  state: LayerState;
  done: number;
  total: number;
  told: number;
}

export function layerProgress(out: NodeJS.WriteStream = process.stderr): PullProgress & { finish(): void } {
  const layers = new Map<string, Layer>();
  if (out.isTTY !== true) {
    return {
      line: (text) => out.write(text + '\n'),
      layer(id, state, done, total) {
        const known = layers.get(id);
        const now = Date.now();
        if (known !== undefined && known.state === state && now - known.told < 5000) return;
        layers.set(id, { id, state, done, total, told: now });
        if (state === 'waiting') return;
        const moving = state === 'downloading' || state === 'applying';
        out.write(`${id}: ${WORDS[state]}${moving ? ` ${human(done)}/${human(total)}` : ''}\n`);
      },
      finish: () => undefined,
    };
  }
  let drawn = 0;
  let lastDraw = 0;
  const draw = () => {
    lastDraw = Date.now();
    const width = 30;
    let text = drawn > 0 ? `\x1b[${drawn}A` : '';
    for (const l of layers.values()) {
      const moving = l.state === 'downloading' || l.state === 'applying';
      const filled = l.total > 0 ? Math.round((Math.min(l.done, l.total) / l.total) * width) : 0;
      const bar = moving ? ` [${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}] ${human(l.done)}/${human(l.total)}` : '';
      text += `\r${l.id}: ${WORDS[l.state]}${bar}\x1b[K\n`;
    }
    drawn = layers.size;
    out.write(text);
  };
  return {
    line(text) {
      // Above the layer lines: those are drawn again below it.
      out.write(`${drawn > 0 ? `\x1b[${drawn}A\r` : ''}${text}\x1b[K\n`);
      drawn = 0;
      if (layers.size > 0) draw();
    },
    layer(id, state, done, total) {
      const known = layers.get(id);
      layers.set(id, { id, state, done, total, told: 0 });
      if (known?.state !== state || Date.now() - lastDraw >= 100) draw();
    },
    finish: () => draw(),
  };
}
