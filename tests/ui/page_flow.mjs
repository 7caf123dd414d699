// End-to-end flow of the "Model Serving" page (main area) in a real JupyterLab, driven by
// playwright-core with Debian's chromium. Started by tests/ui/test_page.py, which owns jupyter lab,
// creates the A/B endpoint and runs a bounded load against it while this script drives the browser.
// Exits non-zero on the first failed step, leaving NN-step-FAILED.png in $ARTIFACTS.
//
// Environment: LAB_URL (with trailing slash), LAB_TOKEN, ARTIFACTS, CHROMIUM_PATH, ENDPOINT.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { LAB_URL, TOKEN, need, openFlow } from './flow.mjs';

const NAME = need('ENDPOINT');
const FAILED_ID = need('FAILED_REQUEST_ID'); // x-request-id of a request test_page.py saw fail
const SETTLE_MS = 180000;

// 1600x1000: the size of the screenshots in docs/screenshots.
const { page, step, shot, run } = await openFlow({ viewport: { width: 1600, height: 1000 } });
const ARTIFACTS = need('ARTIFACTS');

const main = page.locator('#jupyter-serving-page');
const sidebar = page.locator('#jupyter-serving-panel');
const chart = title => main.locator(`figure.jp-serving-chart[data-chart="${title}"]`);
const points = async title => Number(await chart(title).getAttribute('data-points'));
const lastValues = async title =>
  JSON.parse((await chart(title).getAttribute('data-last')) || '{}');

async function openPalette() {
  const input = page.locator('.lm-CommandPalette-input');
  for (let attempt = 1; attempt <= 10 && !(await input.isVisible()); attempt++) {
    await page.locator('#jp-main-dock-panel .lm-TabBar').first().click();
    await page.keyboard.press('Control+Shift+C');
    await input.waitFor({ state: 'visible', timeout: 2000 }).catch(() => undefined);
  }
  return input;
}

async function tab(name) {
  await main.locator(`button[name="tab-${name}"]`).click();
  await main.locator(`.jp-serving-tab-body[data-tab="${name}"]`).waitFor();
}

async function waitEvent(type, timeout = SETTLE_MS) {
  await main.locator(`tr[data-event="${type}"]`).first().waitFor({ timeout });
}

/** Edit the endpoint on its page: `change` fills the full-page form, then it is submitted. */
async function edit(change) {
  await main.locator('button[name="edit"]:not([disabled])').click({ timeout: SETTLE_MS });
  await main.locator('form.jp-serving-form').waitFor();
  await main
    .locator('select[name="entities.0.model"] option[value="iris-lr"]')
    .waitFor({ state: 'attached' });
  await change();
  await shot('edit-form');
  await main.locator('button[name="submit"]').click();
  await main.locator('.jp-serving-tabs').waitFor();
}

await run(async () => {
  await step('lab-loaded', async () => {
    await page.goto(`${LAB_URL}lab?reset&token=${TOKEN}`); // reset: no layout an earlier flow on this Lab left
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
    await sidebar.waitFor({ state: 'attached' });
  });

  await step('endpoints-page', async () => {
    const input = await openPalette();
    await input.fill('Open Model Serving Page');
    await page
      .locator('.lm-CommandPalette-item', { hasText: 'Open Model Serving Page' })
      .first()
      .click();
    const row = main.locator(`tr[data-endpoint="${NAME}"]`);
    await row.waitFor();
    await row.locator('.jp-serving-badge[data-badge="READY"]').waitFor();
    // The load runs: the table shows a request rate above zero.
    await page.waitForFunction(
      name => {
        const cell = document.querySelector(
          `#jupyter-serving-page tr[data-endpoint="${name}"] td[data-metric="requests"]`
        );
        return !!cell && Number(cell.textContent) > 0;
      },
      NAME,
      { timeout: 60000 }
    );
  });

  await step('endpoint-overview', async () => {
    await main.locator(`tr[data-endpoint="${NAME}"] a.jp-serving-link`).click();
    await main.locator('.jp-serving-detail').waitFor();
    await chart('Requests').locator('canvas').waitFor();
    await chart('Latency p99').locator('canvas').waitFor();
    await chart('Traffic split').locator('canvas').waitFor();
    const before = await points('Requests');
    // Live: new samples arrive while the page is open, with traffic on both entities.
    await page.waitForFunction(
      n =>
        Number(
          document
            .querySelector('#jupyter-serving-page figure[data-chart="Requests"]')
            ?.getAttribute('data-points')
        ) >
        n + 2,
      before,
      { timeout: 60000 }
    );
    const rates = await lastValues('Requests');
    if (!(rates['iris-lr-1'] > 0 && rates['iris-lr-2'] > 0)) {
      throw new Error(`expected traffic on both entities, got ${JSON.stringify(rates)}`);
    }
    const split = await lastValues('Traffic split');
    if (split['iris-lr-1'] !== 50 || split['iris-lr-2'] !== 50) {
      throw new Error(`traffic chart should show 50/50, got ${JSON.stringify(split)}`);
    }
    // Equal series stay apart (each entity its own dash pattern), and the time axis has labels.
    const dashes = JSON.parse(await chart('Requests').getAttribute('data-dashes'));
    if (dashes.length !== 2 || JSON.stringify(dashes[0]) === JSON.stringify(dashes[1])) {
      throw new Error(`the two entities' lines should differ in dash: ${JSON.stringify(dashes)}`);
    }
    const xLabels = Number(
      await chart('Requests').locator('.jp-serving-chart-canvas').getAttribute('data-x-labels')
    );
    if (!(xLabels >= 2)) {
      throw new Error(`the time axis should have several labels, got ${xLabels}`);
    }
    // Charts: 4xx apart from 5xx, memory named for what it measures (PSS), a choice of time range.
    for (const title of ['Client errors', 'Server errors', 'Memory']) {
      await chart(title).locator('canvas').waitFor();
    }
    if (!/PSS/.test(await chart('Memory').locator('figcaption').textContent())) {
      throw new Error('the memory chart should say it shows PSS');
    }
    const ranges = await main.locator('select[name="time-range"] option').allTextContents();
    if (JSON.stringify(ranges) !== JSON.stringify(['15 min', '1 h', 'all'])) {
      throw new Error(`time ranges: ${JSON.stringify(ranges)}`);
    }
    await main.locator('select[name="time-range"]').selectOption('1 h');
    await chart('Requests').locator('canvas').waitFor();
    if (!((await points('Requests')) > 0)) {
      throw new Error('the 1 h range shows no samples');
    }
    await main.locator('select[name="time-range"]').selectOption('15 min');
    // Each entity's card says whether it scales to zero, as configured (test_page.py: v2 only).
    for (const [served, want] of [
      ['iris-lr-1', 'off'],
      ['iris-lr-2', 'on']
    ]) {
      const card = main.locator(
        `.jp-serving-entity-card[data-served="${served}"] .jp-serving-card-scale-to-zero`
      );
      const shown = `${await card.getAttribute('data-scale-to-zero')} / ${await card.textContent()}`;
      if (shown !== `${want} / Scale to zero: ${want}`) {
        throw new Error(`${served}'s card should read "Scale to zero: ${want}", got ${shown}`);
      }
    }
  });

  await step('sidebar-opens-the-page', async () => {
    // The sidebar's compact list opens the same page (navigating it, not stacking a second one).
    await page.locator('.jp-SideBar [data-id="jupyter-serving-panel"]').click();
    await sidebar.locator(`li[data-endpoint="${NAME}"] button[name="open-endpoint"]`).click();
    await main.locator(`.jp-serving-detail[data-endpoint="${NAME}"]`).waitFor();
    await shot('sidebar');
    if ((await page.locator('#jupyter-serving-page').count()) !== 1) {
      throw new Error('a second Model Serving page was opened');
    }
    await page.locator('.jp-SideBar [data-id="jupyter-serving-panel"]').click();
    await sidebar.waitFor({ state: 'hidden' });
  });

  await step('update-in-events-and-traffic-chart', async () => {
    await edit(async () => {
      await main.locator('input[name="entities.0.traffic"]').fill('80');
    });
    await page.waitForFunction(
      () => {
        const last = document
          .querySelector('#jupyter-serving-page figure[data-chart="Traffic split"]')
          ?.getAttribute('data-last');
        const split = JSON.parse(last || '{}');
        return split['iris-lr-1'] === 80 && split['iris-lr-2'] === 20;
      },
      null,
      { timeout: SETTLE_MS }
    );
    await main
      .locator('.jp-serving-traffic-item[data-route="iris-lr-1"]', { hasText: '80%' })
      .waitFor();
    await tab('events');
    await waitEvent('UPDATE_SUCCEEDED');
    await waitEvent('ENDPOINT_CREATED');
    // Times read 24-hour, as everywhere else on the page (no AM/PM).
    const times = await main.locator('tr[data-event] td:first-child').allTextContents();
    if (!times.length || times.some(t => !/^\d{2}:\d{2}:\d{2}$/.test(t.trim()))) {
      throw new Error(`event times should be 24-hour hh:mm:ss: ${JSON.stringify(times)}`);
    }
  });

  await step('failed-deploy-event-and-badge', async () => {
    await tab('overview');
    await edit(async () => {
      // A validation error shows under its field without moving the other fields to new columns.
      const xs = async () =>
        Promise.all(
          ['traffic', 'workloadType', 'workloadSize'].map(
            async f => (await main.locator(`[name="entities.1.${f}"]`).boundingBox()).x
          )
        );
      const before = await xs();
      await main.locator('input[name="entities.1.name"]').fill('iris-lr-1'); // a duplicate name
      await main.locator('button[name="submit"]').click();
      await main.locator('[data-field="entities.1.name"]').waitFor();
      await shot('form-validation-error');
      const after = await xs();
      if (JSON.stringify(before) !== JSON.stringify(after)) {
        throw new Error(`the form reflowed: ${before} -> ${after}`);
      }
      await main.locator('input[name="entities.1.name"]').fill('iris-lr-2');
      await main.locator('select[name="entities.1.model"]').selectOption('fail-load');
      // Picking a model picks its newest version.
      const version = await main.locator('select[name="entities.1.version"]').inputValue();
      if (version !== '1') {
        throw new Error(`the version should default to the newest (1), got '${version}'`);
      }
    });
    await main
      .locator('.jp-serving-page-toolbar .jp-serving-badge[data-badge="failed"]')
      .waitFor({ timeout: SETTLE_MS });
    await main.locator('.jp-serving-callout-error').waitFor();
    await tab('events');
    await waitEvent('UPDATE_FAILED');
    const message = await main
      .locator('tr[data-event="UPDATE_FAILED"] .jp-serving-event-message')
      .first()
      .textContent();
    if (!/Config update failed/.test(message)) {
      throw new Error(`unexpected failure message: ${message}`);
    }
    await main.locator('button[name="tab-events"] .jp-serving-tab-dot').waitFor();
  });

  await step('inference-table-and-verdict', async () => {
    await tab('table');
    await main.locator('tr[data-row]').first().waitFor({ timeout: 60000 });
    const verdict = main.locator('[data-verdict]');
    await verdict.waitFor({ timeout: 60000 });
    const text = await verdict.textContent();
    if (!/iris-lr-2/.test(text) || !/Latency/.test(text)) {
      throw new Error(`verdict does not compare the entities: ${text}`);
    }
    await main.locator('.jp-serving-comparison tbody tr').nth(1).waitFor();
    // The table stores whole milliseconds: a sub-millisecond p50 reads "< 1 ms", never "0.0 ms".
    const latencies = await main
      .locator('.jp-serving-comparison td[data-latency]')
      .allTextContents();
    if (
      !latencies.length ||
      latencies.some(t => /^0(\.0)? ms$/.test(t.trim()) || !/ms|s$/.test(t))
    ) {
      throw new Error(`latencies read wrong: ${JSON.stringify(latencies)}`);
    }
    // The control is the entity with most traffic (80 %), and the user can pick the other one.
    await main.locator('tr[data-control][data-entity="iris-lr-1"]').waitFor();
    await shot('inference-table-default-control');
    await main.locator('select[name="control"]').selectOption('iris-lr-2');
    await main.locator('tr[data-control][data-entity="iris-lr-2"]').waitFor({ timeout: 30000 });
    const verdict2 = await main.locator('[data-verdict]').textContent();
    if (!/Latency p50\/p95 iris-lr-1:/.test(verdict2)) {
      throw new Error(`verdict does not compare iris-lr-1 against iris-lr-2: ${verdict2}`);
    }
    // A row's request id links to its log lines: the Logs tab, on the row's entity, filtered to it.
    const row = main.locator('tr[data-row]').first();
    const id = await row.locator('button[name="row-logs"]').getAttribute('data-request-id');
    const served = (await row.locator('td').nth(1).textContent()).trim();
    await row.locator('button[name="row-logs"]').click();
    await main.locator(`pre.jp-serving-logs[data-filter="${id}"]`).waitFor();
    await main.locator(`button[name="logs-${served}"].jp-mod-current`).waitFor();
    await tab('table');
  });

  await step('logs-tab', async () => {
    await tab('logs');
    await main.locator('button[name="logs-iris-lr-1"]').click();
    await page.waitForFunction(() =>
      /loading model/.test(
        document.querySelector('#jupyter-serving-page pre.jp-serving-logs')?.textContent ?? ''
      )
    );
    if (!(await main.locator('input[name="logs-follow"]').isChecked())) {
      throw new Error('the logs should follow (tail) by default');
    }
    // The filter keeps only the lines that contain it.
    await main.locator('input[name="logs-filter"]').fill('loading model');
    await main.locator('pre.jp-serving-logs[data-filter="loading model"]').waitFor();
    const lines = (await main.locator('pre.jp-serving-logs').textContent()).split('\n');
    if (!lines.length || lines.some(line => !/loading model/i.test(line))) {
      throw new Error(`the filter let other lines through: ${JSON.stringify(lines.slice(0, 5))}`);
    }
    // A failed request's id (its x-request-id, its row's databricks_request_id) finds its log line.
    await main.locator('input[name="logs-filter"]').fill(FAILED_ID);
    await page.waitForFunction(
      id =>
        (
          document.querySelector('#jupyter-serving-page pre.jp-serving-logs')?.textContent ?? ''
        ).includes(`request_id=${id} invocation failed (400`),
      FAILED_ID,
      { timeout: 60000 }
    );
    await shot('logs-request-id');
    await main.locator('input[name="logs-filter"]').fill('');
  });

  await step('query-tab', async () => {
    await tab('query');
    const input = main.locator('textarea[name="request"]');
    // Pre-filled from the model's signature: the first click answers instead of a 400.
    await page.waitForFunction(() =>
      /petal length/.test(
        document.querySelector('#jupyter-serving-page textarea[name="request"]')?.value ?? ''
      )
    );
    await main.locator('button[name="send-query"]').click();
    await main
      .locator('.jp-serving-playground-result[data-status="200"]')
      .waitFor({ timeout: 60000 });
    const answer = await main.locator('.jp-serving-response').textContent();
    if (!/predictions/.test(answer)) {
      throw new Error(`the pre-filled request did not answer predictions: ${answer}`);
    }
    await main.locator('[data-endpoint-url]').waitFor();
    await shot('query-answered');
    // The snippets, exactly as shown, for test_page.py to run (the token is read from the env).
    for (const id of ['curl', 'python-sdk', 'mlflow']) {
      await main.locator(`button[name="snippet-${id}"]`).click();
      const code = await main.locator(`pre.jp-serving-snippet[data-snippet="${id}"]`).textContent();
      if (code.includes(TOKEN)) {
        throw new Error(`the ${id} snippet prints the token`);
      }
      writeFileSync(join(ARTIFACTS, `snippet-${id}.txt`), code);
    }
    await main.locator('button[name="snippet-curl"]').click();
    // A failed request clears the previous answer.
    const valid = await input.inputValue();
    await input.fill('{"dataframe_split": ');
    await main.locator('button[name="send-query"]').click();
    await main.locator('.jp-serving-error').first().waitFor();
    if (await main.locator('.jp-serving-playground-result').count()) {
      throw new Error('the previous answer stayed on screen after a failed request');
    }
    await input.fill(valid);
  });

  await step('overview-after', async () => {
    await tab('overview');
    await chart('Requests').locator('canvas').waitFor();
  });

  await step('notebook-button-inserts-in-view', async () => {
    // A long notebook is open (test_page.py wrote long.ipynb, scrolled to its top): the page's
    // Notebook button appends the %%serve cell to it and scrolls it into view.
    const input = await openPalette();
    await input.fill('Open from Path');
    await page.locator('.lm-CommandPalette-item', { hasText: 'Open from Path' }).first().click();
    await page.locator('.jp-Dialog input').fill('long.ipynb');
    await page.locator('.jp-Dialog button.jp-mod-accept').click();
    const notebook = page.locator('.jp-NotebookPanel:visible');
    await notebook.locator('.jp-Cell', { hasText: 'cell_59' }).waitFor({ state: 'attached' });
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'Model Serving' }).click();
    await main.locator('button[name="open-in-notebook"]').click();
    const cell = notebook.locator('.jp-Cell', { hasText: '%%serve' }).last();
    await cell.waitFor();
    await page.waitForFunction(() => {
      const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(
        p => p.offsetParent !== null
      );
      const scroller = panel?.querySelector('.jp-WindowedPanel-outer');
      const cells = [...(panel?.querySelectorAll('.jp-Cell') ?? [])].filter(c =>
        c.textContent.includes('%%serve')
      );
      const last = cells.at(-1);
      if (!scroller || !last) {
        return false;
      }
      const view = scroller.getBoundingClientRect();
      const box = last.getBoundingClientRect();
      return box.top >= view.top - 1 && box.top < view.bottom;
    });
    await shot('notebook-cell-in-view');
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'Model Serving' }).click();
    await main.locator('.jp-serving-detail').waitFor();
  });

  await step('back-to-the-table', async () => {
    await main.locator('.jp-serving-breadcrumbs a').click();
    await main
      .locator(`tr[data-endpoint="${NAME}"] .jp-serving-badge[data-badge="failed"]`)
      .waitFor();
  });
});
