/**
 * JupyterLab plugin: registers the "Model Serving" sidebar panel and its command-palette entry.
 *
 * Everything JupyterLab-specific (auth, dialogs, notebooks) is wired here and injected into the
 * panel, so the view and the logic modules never import the application.
 */

import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import * as React from 'react';

import { ServingClient, Transport } from './client';
import { cellsToInsert } from './notebook';
import { ServingPage } from './page';
import { ServingPanel } from './panel';
import type { Place } from './ui/PageView';

export const COMMAND_OPEN = 'jupyter-serving:open';
export const COMMAND_OPEN_PAGE = 'jupyter-serving:open-page';

/**
 * `ServerConnection.makeRequest` adds Jupyter's token header or, in a cookie session, the
 * `X-XSRFToken` header that every non-GET request needs (jupyter_server's check_xsrf_cookie).
 */
export function jupyterTransport(settings = ServerConnection.makeSettings()): Transport {
  return (path, init) =>
    ServerConnection.makeRequest(URLExt.join(settings.baseUrl, path), init, settings);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-serving:plugin',
  description: 'Model Serving panel: create, monitor, query and manage local serving endpoints.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ILabShell, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null,
    notebooks: INotebookTracker | null
  ) => {
    const client = new ServingClient(jupyterTransport());
    const openInNotebook = (cell: string): Promise<void> =>
      insertIntoNotebook(app, notebooks, cell);
    let page: ServingPage | null = null;
    const openPage = (endpoint?: string): void => {
      const place: Place = endpoint
        ? { kind: 'detail', name: endpoint, tab: 'overview' }
        : { kind: 'list' };
      if (!page || page.isDisposed) {
        page = new ServingPage({ client, confirm, openInNotebook }, place);
        app.shell.add(page, 'main');
      } else {
        page.navigate(place);
      }
      app.shell.activateById(page.id);
    };
    const panel = new ServingPanel({ client, confirm, showText, openInNotebook, openPage });
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, panel.id);

    app.commands.addCommand(COMMAND_OPEN, {
      label: 'Open Model Serving',
      caption: 'Show the Model Serving panel (serving endpoints for MLflow models)',
      execute: () => (labShell ? labShell.activateById(panel.id) : app.shell.activateById(panel.id))
    });
    palette?.addItem({ command: COMMAND_OPEN, category: 'Model Serving' });
    app.commands.addCommand(COMMAND_OPEN_PAGE, {
      label: args =>
        args.endpoint ? `Open Serving Endpoint ${args.endpoint}` : 'Open Model Serving Page',
      caption:
        'Open the Model Serving page: endpoints, live charts, events, logs, inference tables',
      execute: args => openPage(typeof args.endpoint === 'string' ? args.endpoint : undefined)
    });
    palette?.addItem({ command: COMMAND_OPEN_PAGE, category: 'Model Serving' });
  }
};

async function confirm(title: string, body: string, accept: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: accept })]
  });
  return result.button.accept;
}

function showText(title: string, text: string): void {
  void showDialog({
    title,
    body: React.createElement('pre', { className: 'jp-serving-logs' }, text || '(no output yet)'),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

/** Append the cells to the current notebook, or to a new one when none is open. */
async function insertIntoNotebook(
  app: JupyterFrontEnd,
  notebooks: INotebookTracker | null,
  magicCell: string
): Promise<void> {
  let panel: NotebookPanel | null = notebooks?.currentWidget ?? null;
  if (!panel) {
    // Naming the default kernel skips the "Select Kernel" dialog a new notebook may otherwise raise.
    const specs = app.serviceManager.kernelspecs;
    await specs.ready;
    const kernelName = specs.specs?.default;
    panel = (await app.commands.execute(
      'notebook:create-new',
      kernelName ? { kernelName } : {}
    )) as NotebookPanel;
  }
  await panel.context.ready;
  const model = panel.content.model;
  if (!model) {
    throw new Error('The notebook has no model yet.');
  }
  const shared = model.sharedModel;
  const sources = shared.cells.map(c => c.getSource());
  const cells = cellsToInsert(magicCell, sources);
  // A fresh notebook has one empty cell: fill it rather than leave a blank cell on top. (Deleting it
  // instead races the notebook's idle-time rendering of that very cell.)
  const reuseBlank = sources.length === 1 && sources[0].trim() === '';
  const at = reuseBlank ? 0 : sources.length;
  shared.transact(() => {
    const rest = reuseBlank ? cells.slice(1) : cells;
    if (reuseBlank) {
      shared.getCell(0).setSource(cells[0]);
    }
    shared.insertCells(
      sources.length,
      rest.map(source => ({ cell_type: 'code' as const, source }))
    );
  });
  app.shell.activateById(panel.id);
  const last = at + cells.length - 1;
  panel.content.activeCellIndex = last;
  // The notebook keeps its scroll position: bring the inserted cell into view.
  await panel.content.scrollToItem(last, 'smart');
}

export default plugin;
