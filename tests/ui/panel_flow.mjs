// End-to-end flow of the "Model Serving" panel in a real JupyterLab, driven by playwright-core with
// Debian's chromium (no Playwright browser download). Started by tests/ui/test_panel.py, which owns
// the jupyter lab process; this script only drives the browser and exits non-zero on the first
// failed step, leaving that step's screenshot (NN-step-FAILED.png) in $ARTIFACTS.
//
// Environment: LAB_URL (with trailing slash), LAB_TOKEN, ARTIFACTS, CHROMIUM_PATH,
// SPLIT_STEP ("1" when the server answers PUT .../config), ENDPOINT (name to create).

import { LAB_URL, TOKEN, openFlow } from './flow.mjs';

const SPLIT_STEP = process.env.SPLIT_STEP === '1';
const NAME = process.env.ENDPOINT || 'ui-iris';
const READY_TIMEOUT_MS = Number(process.env.READY_TIMEOUT_MS || 180000);
const IRIS_QUERY = {
  dataframe_split: {
    columns: ['sepal length (cm)', 'sepal width (cm)', 'petal length (cm)', 'petal width (cm)'],
    data: [
      [5.1, 3.5, 1.4, 0.2],
      [6.7, 3.0, 5.2, 2.3]
    ]
  }
};

const { page, log, note, step, shot, run } = await openFlow({
  viewport: { width: 1400, height: 1000 },
  logConsole: msg => msg.type() === 'error' || /serving/i.test(msg.text())
});
// Record every serving API call so a failure report shows what the panel actually sent.
page.on('response', response => {
  const url = response.url();
  if (/serving-endpoints|jupyter-serving/.test(url) && !/\.js(\?|$)/.test(url)) {
    log.push(`${response.request().method()} ${url.replace(LAB_URL, '/')} -> ${response.status()}`);
  }
});

const panel = page.locator('#jupyter-serving-panel');
const card = panel.locator(`li.jp-serving-endpoint[data-endpoint="${NAME}"]`);

/** Wait until the card shows READY and no update badge (the split/update has converged). */
async function waitSettled(timeout = READY_TIMEOUT_MS) {
  await card.locator('.jp-serving-badge[data-badge="READY"]').waitFor({ timeout });
  await card
    .locator('.jp-serving-badges .jp-serving-badge[data-badge="updating"]')
    .waitFor({ state: 'detached', timeout });
}

async function expectLegend(route, percentage) {
  await page.waitForFunction(
    ([endpoint, r, p]) => {
      const item = document.querySelector(
        `#jupyter-serving-panel li[data-endpoint="${endpoint}"] > .jp-serving-traffic .jp-serving-traffic-item[data-route="${r}"]`
      );
      return !!item && item.textContent.trim().endsWith(`${p}%`);
    },
    [NAME, route, percentage],
    { timeout: READY_TIMEOUT_MS }
  );
}

await run(async () => {
  await step('lab-loaded', async () => {
    // The token logs the browser in (cookie). Plain Lab also embeds the token in its page config, and
    // ServerConnection then sends it as a header; the second load blanks it, as JupyterHub does, so
    // the rest of the session runs on the cookie alone and every POST/PUT/DELETE of the panel must
    // carry the X-XSRFToken header to succeed.
    // `reset`: the default layout (the Launcher), whatever an earlier flow on this Lab left open.
    await page.goto(`${LAB_URL}lab?reset&token=${TOKEN}`);
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
    await page.route(
      url => url.pathname.endsWith('/lab'),
      async route => {
        const response = await route.fetch();
        const html = (await response.text()).replace(`"token": "${TOKEN}"`, '"token": ""');
        await route.fulfill({ response, body: html });
      }
    );
    await page.goto(`${LAB_URL}lab`);
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
    const config = await page.locator('#jupyter-config-data').textContent();
    if (JSON.parse(config).token !== '') {
      throw new Error('the page config still carries the token, so the XSRF path is not exercised');
    }
    await panel.waitFor({ state: 'attached' });
  });

  await step('open-from-command-palette', async () => {
    if (await panel.isVisible()) {
      throw new Error('the panel is expected to start collapsed');
    }
    // Lab's shortcuts need focus inside the shell; right after load it may still be elsewhere.
    const input = page.locator('.lm-CommandPalette-input');
    // Shortcuts are bound once the keyboard settings load, which can lag behind the splash screen.
    for (let attempt = 1; attempt <= 10 && !(await input.isVisible()); attempt++) {
      await page.locator('#jp-main-dock-panel').hover();
      await page.locator('#jp-main-dock-panel .lm-TabBar').first().click();
      await page.keyboard.press('Control+Shift+C');
      await input
        .waitFor({ state: 'visible', timeout: 2000 })
        .catch(() => note(`palette: attempt ${attempt} no palette`));
    }
    await input.fill('Open Model Serving');
    await page
      .locator('.lm-CommandPalette-item', { hasText: 'Open Model Serving' })
      .first()
      .click();
    await panel.waitFor({ state: 'visible' });
    await panel.getByText('Model Serving', { exact: true }).waitFor();
    await panel.locator('.jp-serving-empty, .jp-serving-endpoints').first().waitFor();
  });

  await step('form-filled', async () => {
    await panel.locator('button[name="create"]').click();
    await panel.locator('form.jp-serving-form').waitFor();
    // Models come from the MLflow registry through the server.
    await panel
      .locator('select[name="entities.0.model"] option[value="iris-lr"]')
      .waitFor({ state: 'attached' });
    await panel.locator('input[name="name"]').fill('databricks-reserved');
    await panel.locator('select[name="entities.0.model"]').selectOption('iris-lr');
    await panel.locator('select[name="entities.0.version"]').selectOption('1');
    await panel.locator('button[name="add-entity"]').click();
    await panel.locator('select[name="entities.1.model"]').selectOption('iris-lr');
    await panel.locator('select[name="entities.1.version"]').selectOption('2');
    // Setting one share moves the rest to the other entity.
    await panel.locator('input[name="entities.0.traffic"]').fill('80');
    const other = await panel.locator('input[name="entities.1.traffic"]').inputValue();
    if (other !== '20') {
      throw new Error(`entity 2 traffic is ${other}, expected 20`);
    }
    await panel.locator('input[name="inferenceTable.enabled"]').check();
  });

  await step('server-validation-inline', async () => {
    await panel.locator('button[name="submit"]').click();
    const error = panel.locator('.jp-serving-field-error[data-field="name"]');
    await error.waitFor();
    const text = await error.textContent();
    if (!/databricks-/.test(text)) {
      throw new Error(`unexpected name error: ${text}`);
    }
  });

  await step('created', async () => {
    await panel.locator('input[name="name"]').fill(NAME);
    await panel.locator('button[name="submit"]').click();
    await card.waitFor({ timeout: 30000 });
    await card.locator('.jp-serving-entity[data-served="iris-lr-1"]').first().waitFor();
  });

  await step('ready', async () => {
    await waitSettled();
    await expectLegend('iris-lr-1', 80);
    await expectLegend('iris-lr-2', 20);
    const details = await card.locator('.jp-serving-entity-detail').allTextContents();
    if (!details.some(t => /iris-lr v1/.test(t)) || !details.some(t => /replica/.test(t))) {
      throw new Error(`entity details lack version or replicas: ${JSON.stringify(details)}`);
    }
    await card.locator('.jp-serving-table').waitFor();
    // The Jupyter user created it and, as the server's owner, manages it.
    const principals = await card.locator('.jp-serving-principals').textContent();
    if (!/^Created by \S.* · you: Can manage$/.test(principals ?? '')) {
      throw new Error(`principals line: ${JSON.stringify(principals)}`);
    }
  });

  if (SPLIT_STEP) {
    await step('split-changed', async () => {
      await card.locator('button[name="edit"]').click();
      await panel.locator('form.jp-serving-form').waitFor();
      await panel.locator('input[name="entities.0.traffic"]').fill('30');
      await panel.locator('button[name="submit"]').click();
      await card.waitFor();
      await expectLegend('iris-lr-1', 30);
      await expectLegend('iris-lr-2', 70);
      await waitSettled();
    });

    await step('update-canceled', async () => {
      // Entity 2 becomes the slow-load fixture told (through an environment variable set in the
      // form) to take ten minutes to load, so the update is reliably still running when cancelled;
      // the old config must keep serving with its split.
      await card.locator('button[name="edit"]').click();
      await panel.locator('form.jp-serving-form').waitFor();
      await panel.locator('select[name="entities.1.model"]').selectOption('slow-load');
      await panel.locator('select[name="entities.1.version"]').selectOption('1');
      const advanced = panel.locator('[data-entity-index="1"] details.jp-serving-advanced');
      await advanced.locator('summary').click();
      await advanced.locator('button[name="entities.1.addEnvVar"]').click();
      await advanced.locator('input[aria-label="variable name"]').fill('SLOW_LOAD_S');
      await advanced.locator('input[aria-label="variable value"]').fill('600');
      await panel.locator('button[name="submit"]').click();
      await card.locator('.jp-serving-badge[data-badge="updating"]').waitFor();
      await card.locator('.jp-serving-pending').waitFor();
      await card.locator('button[name="cancel-update"]').click();
      await card.locator('.jp-serving-badge[data-badge="canceled"]').waitFor({ timeout: 60000 });
      await card.locator('.jp-serving-badge[data-badge="READY"]').waitFor();
      await expectLegend('iris-lr-2', 70);
    });
  } else {
    note('SKIP split-changed: the server does not answer PUT .../config yet');
  }

  await step('queried', async () => {
    await card.locator('button[name="query"]').click();
    const playground = card.locator('.jp-serving-playground');
    await playground.locator('textarea[name="request"]').fill(JSON.stringify(IRIS_QUERY, null, 2));
    await playground.locator('button[name="send-query"]').click();
    const result = playground.locator('.jp-serving-playground-result[data-status="200"]');
    await result.waitFor({ timeout: 60000 });
    const body = await result.locator('pre').textContent();
    if (!/predictions/.test(body)) {
      throw new Error(`no predictions in ${body}`);
    }
    // Querying one served entity bypasses the split.
    await playground.locator('select[name="target"]').selectOption('iris-lr-2');
    await playground.locator('button[name="send-query"]').click();
    await playground.getByText('served by iris-lr-2').waitFor({ timeout: 60000 });
  });

  await step('logs', async () => {
    await card
      .locator('.jp-serving-entity[data-served="iris-lr-1"] button[name="logs"]')
      .first()
      .click();
    const dialog = page.locator('.jp-Dialog');
    await dialog.getByText(`Logs of ${NAME} / iris-lr-1`).waitFor();
    await dialog.locator('pre.jp-serving-logs').waitFor();
    await shot('logs-dialog');
    await dialog.locator('button', { hasText: 'Close' }).click();
    await dialog.waitFor({ state: 'detached' });
  });

  await step('open-in-notebook', async () => {
    await card.locator('button[name="open-in-notebook"]').click();
    const notebook = page.locator('.jp-NotebookPanel:visible');
    await notebook.waitFor({ timeout: 60000 });
    await notebook.locator('.jp-Cell', { hasText: '%%serve create' }).waitFor({ timeout: 30000 });
    await notebook.locator('.jp-Cell', { hasText: '%load_ext jupyter_serving' }).first().waitFor();
    // The new notebook gets the default kernel without asking (no "Select Kernel" dialog).
    await notebook
      .locator('.jp-Toolbar-kernelName', { hasText: 'Python 3' })
      .waitFor({ timeout: 60000 });
    if (await page.locator('.jp-Dialog').count()) {
      throw new Error('a dialog is open after opening the notebook');
    }
  });

  await step('deleted', async () => {
    await card.locator('button[name="delete"]').click();
    const dialog = page.locator('.jp-Dialog');
    await dialog.getByText(`Delete endpoint "${NAME}"?`).waitFor();
    await dialog.locator('button.jp-mod-warn').click();
    await card.waitFor({ state: 'detached', timeout: 60000 });
  });

  await step('failed-badge', async () => {
    // A model that cannot load: the update fails and the panel says so instead of spinning forever.
    const broken = panel.locator(`li.jp-serving-endpoint[data-endpoint="${NAME}-broken"]`);
    await panel.locator('button[name="create"]').click();
    await panel
      .locator('select[name="entities.0.model"] option[value="fail-load"]')
      .waitFor({ state: 'attached' });
    await panel.locator('input[name="name"]').fill(`${NAME}-broken`);
    await panel.locator('select[name="entities.0.model"]').selectOption('fail-load');
    await panel.locator('button[name="submit"]').click();
    await broken
      .locator('.jp-serving-badge[data-badge="failed"]')
      .first()
      .waitFor({ timeout: READY_TIMEOUT_MS });
    await broken.locator('.jp-serving-badge[data-badge="NOT_READY"]').waitFor();
    // The panel announces the failure once, read from the server's events (UPDATE_FAILED), not
    // derived from the endpoint's state by the panel itself (labextension/src/health.ts).
    await page
      .getByText(`Endpoint '${NAME}-broken' has failed`)
      .first()
      .waitFor({ timeout: READY_TIMEOUT_MS });
    await shot('failed-badge-shown');
    await broken.locator('button[name="delete"]').click();
    await page.locator('.jp-Dialog button.jp-mod-warn').click();
    await broken.waitFor({ state: 'detached', timeout: 60000 });
  });
});
