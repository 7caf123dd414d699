/**
 * The traffic split as one horizontal bar, a coloured segment per served entity.
 */

import * as React from 'react';

import { trafficSegments } from '../traffic';
import type { Route } from '../types';

export const PALETTE_SIZE = 6;

export function TrafficBar({
  routes,
  entityNames
}: {
  routes: Route[];
  entityNames: string[];
}): JSX.Element {
  const segments = trafficSegments(routes, entityNames);
  return (
    <div className="jp-serving-traffic" aria-label="traffic split">
      <div className="jp-serving-traffic-bar">
        {segments.map(s => (
          <div
            key={s.name}
            className={`jp-serving-traffic-segment jp-serving-colour-${s.colour % PALETTE_SIZE}`}
            style={{ width: `${s.percentage}%` }}
            title={`${s.name}: ${s.percentage}%`}
          />
        ))}
      </div>
      <div className="jp-serving-traffic-legend">
        {segments.map(s => (
          <span key={s.name} className="jp-serving-traffic-item" data-route={s.name}>
            <span className={`jp-serving-swatch jp-serving-colour-${s.colour % PALETTE_SIZE}`} />
            {s.name} {s.percentage}%
          </span>
        ))}
      </div>
    </div>
  );
}
