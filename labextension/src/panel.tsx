/**
 * The "Model Serving" sidebar widget: a Lumino shell around the React view, which tells the view
 * when it is shown so that a hidden panel does not poll the server.
 */

import { ReactWidget } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import * as React from 'react';

import { servingIcon } from './icon';
import { PanelServices, PanelView } from './ui/PanelView';

export const PANEL_ID = 'jupyter-serving-panel';

export type PanelHooks = Omit<PanelServices, 'isVisible' | 'onShown'>;

export class ServingPanel extends ReactWidget {
  private readonly shownCallbacks = new Set<() => void>();
  private readonly services: PanelServices;

  constructor(hooks: PanelHooks) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-serving-panel');
    this.title.icon = servingIcon;
    this.title.caption = 'Model Serving';
    this.title.label = '';
    this.services = {
      ...hooks,
      isVisible: () => this.isVisible,
      onShown: callback => {
        this.shownCallbacks.add(callback);
        return () => this.shownCallbacks.delete(callback);
      }
    };
  }

  protected render(): JSX.Element {
    return (
      <>
        <div className="jp-serving-header">
          <h2 className="jp-serving-title">Model Serving</h2>
        </div>
        <PanelView services={this.services} />
      </>
    );
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.shownCallbacks.forEach(callback => callback());
  }
}
