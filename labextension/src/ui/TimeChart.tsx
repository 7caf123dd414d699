/**
 * A live time-series chart (uPlot): one line per served entity, coloured like the traffic bar.
 *
 * uPlot draws on a canvas, so the theme's CSS variables are read once when the chart is built
 * (and again when the series change); new data only calls `setData`, which keeps redraws cheap.
 */

import * as React from 'react';
import uPlot from 'uplot';

import type { Aligned } from '../history';
import { PALETTE_SIZE } from './TrafficBar';

const PALETTE_VARS = [
  '--jp-brand-color1',
  '--jp-warn-color1',
  '--jp-success-color1',
  '--jp-accent-color1',
  '--jp-error-color1',
  '--jp-layout-color4'
];
const HEIGHT = 170;
// Equal series (a 50/50 split, replicas of two entities) would hide each other: each line also
// gets its own dash pattern, and later lines are drawn thinner, so the one below shows through.
const DASHES: number[][] = [[], [7, 4], [2, 3], [10, 3, 2, 3]];

export interface TimeChartProps {
  title: string;
  /** Series labels, in the order of `data`'s y arrays; index = palette colour. */
  labels: string[];
  colours?: number[];
  data: Aligned;
  unit?: string;
  /** Draw as steps (replicas, traffic percentages) rather than lines. */
  stepped?: boolean;
  /** Fix the y range (e.g. 0..100 for percentages). */
  yRange?: [number, number];
  format?: (value: number) => string;
  /** Counts: y ticks only at whole numbers. */
  integer?: boolean;
  /** The time window (epoch seconds) shared by the charts of one page, so they line up. */
  xRange?: [number, number] | null;
}

function cssVar(el: Element, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

/** "20:48:30" for short windows, "20:48" once the window spans ten minutes or more. */
function clock(seconds: number, scale: uPlot.Scale): string {
  const span = (scale.max ?? 0) - (scale.min ?? 0);
  const options: Intl.DateTimeFormatOptions =
    span < 600
      ? { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }
      : { hour: '2-digit', minute: '2-digit', hour12: false };
  return new Date(seconds * 1000).toLocaleTimeString([], options);
}

function options(
  el: HTMLElement,
  props: TimeChartProps,
  width: number,
  xRange: () => [number, number] | null | undefined
): uPlot.Options {
  const axis = cssVar(el, '--jp-ui-font-color2', '#666');
  const grid = cssVar(el, '--jp-border-color2', '#e0e0e0');
  const font = `11px ${cssVar(el, '--jp-ui-font-family', 'sans-serif')}`;
  const format = props.format ?? ((v: number) => `${v}`);
  const paths = props.stepped ? uPlot.paths.stepped?.({ align: 1 }) : undefined;
  const axisStyle = {
    stroke: axis,
    font,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid }
  };
  return {
    width,
    height: HEIGHT,
    // The legend names the lines; values are read off the axes (a live legend shows dashes at rest).
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: {
        time: true,
        range: (_u, min, max) => {
          const shared = xRange();
          return shared && shared[1] > shared[0] ? shared : [min, max];
        }
      },
      y: props.yRange
        ? { range: props.yRange }
        : {
            range: (_u, _min, max) => {
              const top = max > 0 ? max * 1.1 : 1;
              return [0, props.integer ? Math.max(1, Math.ceil(top)) : top];
            }
          }
    },
    axes: [
      // Clock labels are wide: keep ticks far enough apart that they never run together.
      {
        ...axisStyle,
        space: 70,
        values: (u, ticks) => {
          el.dataset.xLabels = String(ticks.length); // the canvas says nothing: for tests
          return ticks.map(t => clock(t, u.scales.x));
        }
      },
      {
        ...axisStyle,
        size: 64,
        // Counts tick at whole numbers only (no "0, 1, 1" from rounding halves).
        incrs: props.integer ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] : undefined,
        values: (_u, ticks) => ticks.map(v => format(v))
      }
    ],
    series: [
      {},
      ...props.labels.map((label, i) => ({
        label,
        stroke: cssVar(el, PALETTE_VARS[(props.colours?.[i] ?? i) % PALETTE_SIZE], '#2196f3'),
        width: Math.max(1.25, 2.5 - 0.5 * i),
        dash: DASHES[i % DASHES.length],
        spanGaps: false,
        paths,
        // Markers only while samples are sparse; a dense line reads better without them.
        points: {
          show: (u: uPlot, _sid: number, i0: number, i1: number) => i1 - i0 < 24 && !!u,
          size: 5
        },
        value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '–' : format(v))
      }))
    ]
  };
}

export function TimeChart(props: TimeChartProps): JSX.Element {
  const format = props.format ?? ((v: number) => `${v}`);
  const holder = React.useRef<HTMLDivElement>(null);
  const plot = React.useRef<uPlot | null>(null);
  const shape = `${props.labels.join('\u0000')}|${props.colours?.join(',')}|${props.stepped}`;
  const xRange = React.useRef(props.xRange);
  xRange.current = props.xRange;

  React.useEffect(() => {
    const el = holder.current;
    if (!el) {
      return;
    }
    const chart = new uPlot(
      options(el, props, Math.max(el.clientWidth, 200), () => xRange.current),
      props.data as uPlot.AlignedData,
      el
    );
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      if (el.clientWidth > 0) {
        chart.setSize({ width: el.clientWidth, height: HEIGHT });
      }
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [shape]);

  React.useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);

  const points = props.data[0].length;
  // The newest value of each series, for tests and for screen readers (the canvas says nothing).
  const lastValues = props.labels.map((label, i) => {
    const ys = props.data[i + 1] ?? [];
    const value = [...ys].reverse().find(v => v !== null && v !== undefined);
    return [label, value ?? null];
  });
  return (
    <figure
      className="jp-serving-chart"
      data-chart={props.title}
      data-points={points}
      data-last={JSON.stringify(Object.fromEntries(lastValues))}
      data-dashes={JSON.stringify(props.labels.map((_, i) => DASHES[i % DASHES.length]))}
      aria-label={`${props.title}: ${lastValues
        .map(([l, v]) => `${l} ${v === null ? 'no data' : format(v as number)}`)
        .join(', ')}`}
    >
      <figcaption className="jp-serving-chart-title">
        {props.title}
        {props.unit ? <span className="jp-serving-chart-unit"> ({props.unit})</span> : null}
      </figcaption>
      <div ref={holder} className="jp-serving-chart-canvas" />
    </figure>
  );
}
