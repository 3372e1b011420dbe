import type { ThroughputSeries } from './results.js';

/** Colours of the series, in order (ours first). */
const COLOURS = ['#1f77b4', '#d62728', '#7f7f7f', '#2ca02c'];

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A "nice" step for about `count` ticks up to `max` (1, 2 or 5 times a power of ten). */
export function niceStep(max: number, count = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

function formatTick(value: number): string {
  if (value >= 1000) return `${Number((value / 1000).toFixed(1))}k`;
  if (value >= 100) return String(Math.round(value));
  return String(Number(value.toFixed(2)));
}

/**
 * Draws throughput by worker count as grouped bars (median) with min–max whiskers, one group per
 * worker count and one bar per series. Plain SVG 1.1, no script, no external fonts.
 */
export function throughputChartSvg(
  series: ThroughputSeries[],
  options: { title: string; unit: string; width?: number; height?: number },
): string {
  const width = options.width ?? 880;
  const height = options.height ?? 420;
  const margin = { top: 56, right: 24, bottom: 64, left: 72 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const workers = [...new Set(series.flatMap((s) => s.points.map((p) => p.workers)))].sort(
    (a, b) => a - b,
  );
  const maxValue = Math.max(
    1,
    ...series.flatMap((s) => s.points.map((p) => (Number.isFinite(p.value.max) ? p.value.max : 0))),
  );
  const step = niceStep(maxValue);
  const top = Math.ceil(maxValue / step) * step;
  const y = (v: number) => margin.top + plotH - (v / top) * plotH;
  const groupW = plotW / Math.max(1, workers.length);
  const barW = Math.min(56, (groupW * 0.8) / Math.max(1, series.length));

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`,
  );
  // Horizontal grid and y ticks.
  for (let v = 0; v <= top + step / 2; v += step) {
    const yy = y(v).toFixed(1);
    out.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${yy}" y2="${yy}" stroke="#e0e0e0"/>`,
      `<text x="${margin.left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle">${formatTick(v)}</text>`,
    );
  }
  out.push(
    `<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.unit)}</text>`,
    `<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`,
  );
  // Bars with whiskers.
  workers.forEach((w, gi) => {
    const groupX = margin.left + gi * groupW;
    const firstX = groupX + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const point = s.points.find((p) => p.workers === w);
      if (!point || !Number.isFinite(point.value.median)) return;
      const colour = COLOURS[si % COLOURS.length]!;
      const x = firstX + si * barW;
      const { median, min, max } = point.value;
      out.push(
        `<rect x="${(x + 2).toFixed(1)}" y="${y(median).toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${(y(0) - y(median)).toFixed(1)}" fill="${colour}"><title>${escapeXml(`${s.name}, ${w} worker(s): median ${Math.round(median)} (min ${Math.round(min)}, max ${Math.round(max)})`)}</title></rect>`,
      );
      const cx = (x + barW / 2).toFixed(1);
      if (Number.isFinite(min) && Number.isFinite(max) && max > min) {
        out.push(
          `<line x1="${cx}" x2="${cx}" y1="${y(max).toFixed(1)}" y2="${y(min).toFixed(1)}" stroke="#000"/>`,
          `<line x1="${(x + barW / 2 - 5).toFixed(1)}" x2="${(x + barW / 2 + 5).toFixed(1)}" y1="${y(max).toFixed(1)}" y2="${y(max).toFixed(1)}" stroke="#000"/>`,
          `<line x1="${(x + barW / 2 - 5).toFixed(1)}" x2="${(x + barW / 2 + 5).toFixed(1)}" y1="${y(min).toFixed(1)}" y2="${y(min).toFixed(1)}" stroke="#000"/>`,
        );
      }
      out.push(
        `<text x="${cx}" y="${(Math.min(y(max), y(median)) - 6).toFixed(1)}" text-anchor="middle" font-size="10">${formatTick(median)}</text>`,
      );
    });
    out.push(
      `<text x="${(groupX + groupW / 2).toFixed(1)}" y="${y(0) + 20}" text-anchor="middle">${w} worker${w === 1 ? '' : 's'}</text>`,
    );
  });
  // Legend.
  let lx = margin.left;
  const ly = height - 18;
  series.forEach((s, si) => {
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLOURS[si % COLOURS.length]}"/>`,
      `<text x="${lx + 18}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
    lx += 30 + s.name.length * 7;
  });
  out.push(
    `<text x="${width - margin.right}" y="42" text-anchor="end" fill="#555" font-size="10">bars: median; whiskers: min–max</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
