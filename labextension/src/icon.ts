/**
 * The sidebar icon: a stacked server with a signal, drawn here so the extension ships no assets.
 */

import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="3" width="18" height="7" rx="1.5"/>
    <rect x="3" y="14" width="18" height="7" rx="1.5"/>
  </g>
  <g class="jp-icon-contrast0" fill="#fff">
    <circle cx="7" cy="6.5" r="1.3"/>
    <circle cx="7" cy="17.5" r="1.3"/>
    <rect x="11" y="5.7" width="7" height="1.6" rx="0.8"/>
    <rect x="11" y="16.7" width="7" height="1.6" rx="0.8"/>
  </g>
</svg>`;

export const servingIcon = new LabIcon({ name: 'jupyter-serving:serving', svgstr: svg });
