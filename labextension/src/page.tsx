/**
 * The "Model Serving" page: a main-area widget around the React page view. One instance; opening
 * it again (from the sidebar or the palette) navigates it instead of stacking tabs.
 */

import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { servingIcon } from './icon';
import { PageServices, PageView, Place } from './ui/PageView';

export const PAGE_ID = 'jupyter-serving-page';

export type PageHooks = Omit<PageServices, 'isVisible' | 'onNavigate'>;

export class ServingPage extends ReactWidget {
  private readonly listeners = new Set<(place: Place) => void>();
  private readonly services: PageServices;

  constructor(
    hooks: PageHooks,
    private readonly initial: Place = { kind: 'list' }
  ) {
    super();
    this.id = PAGE_ID;
    this.addClass('jp-serving-page');
    this.title.icon = servingIcon;
    this.title.label = 'Model Serving';
    this.title.caption = 'Serving endpoints: charts, events, logs, inference tables';
    this.title.closable = true;
    this.services = {
      ...hooks,
      isVisible: () => this.isVisible,
      onNavigate: callback => {
        this.listeners.add(callback);
        return () => this.listeners.delete(callback);
      }
    };
  }

  /** Show the endpoints table, or one endpoint's page. */
  navigate(place: Place): void {
    this.listeners.forEach(listener => listener(place));
  }

  protected render(): JSX.Element {
    return <PageView services={this.services} initial={this.initial} />;
  }
}
