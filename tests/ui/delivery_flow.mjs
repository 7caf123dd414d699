// The page's progressive-delivery views in a real JupyterLab (issue 29), driven by playwright-core with
// Debian's chromium. Started by tests/ui/test_page_delivery.py, which owns jupyter lab, creates the
// endpoint (current 100 %, steady and challenger 0 %) and runs a seeded load that sends the challenger
// only inputs it answers until this script writes $FAILING_GATE.
// Exits non-zero on the first failed step, leaving NN-step-FAILED.png in $ARTIFACTS.
//
// Environment: LAB_URL (with trailing slash), LAB_TOKEN, ARTIFACTS, CHROMIUM_PATH, ENDPOINT, FAILING_GATE.
// docs/screenshots: rollout-running.png is NN-rollout-running.png, rollout.png NN-rollout-rolled-back.png,
// shadow.png NN-shadow-agreement.png and overview-verdict.png NN-overview-verdict.png.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ARTIFACTS, LAB_URL, TOKEN, need, openFlow } from './flow.mjs';

const NAME = need('ENDPOINT');
const GATE = need('FAILING_GATE');
const SETTLE_MS = 180000;

// 1600x1000: the size of the screenshots in docs/screenshots.
const { page, step, shot, run } = await openFlow({ viewport: { width: 1600, height: 1000 } });

const main = page.locator('#jupyter-serving-page');
const rollout = main.locator('.jp-serving-rollout');

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

async function rolloutState(state, timeout = SETTLE_MS) {
  await main.locator(`.jp-serving-rollout[data-rollout-state="${state}"]`).waitFor({ timeout });
}

/** Start a rollout from the tab's form: `to`, steps "10, 50, 100", seconds per step. */
async function startRollout(to, steps, seconds) {
  await main.locator('form.jp-serving-rollout-start').waitFor();
  await main
    .locator(`select[name="rollout-to"] option[value="${to}"]`)
    .waitFor({ state: 'attached' });
  await main.locator('select[name="rollout-to"]').selectOption(to);
  await main.locator('input[name="rollout-steps"]').fill(steps);
  await main.locator('input[name="rollout-step-duration"]').fill(String(seconds));
  await main.locator('button[name="rollout-start"]').click();
}

async function timelineTypes() {
  return main
    .locator('.jp-serving-timeline li[data-event]')
    .evaluateAll(items => items.map(i => i.getAttribute('data-event')));
}

await run(async () => {
  await step('endpoint-page', async () => {
    await page.goto(`${LAB_URL}lab?reset&token=${TOKEN}`); // reset: no layout an earlier flow on this Lab left
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
    await page.locator('#jupyter-serving-panel').waitFor({ state: 'attached' }); // the extension loaded
    const input = await openPalette();
    await input.fill('Open Model Serving Page');
    await page
      .locator('.lm-CommandPalette-item', { hasText: 'Open Model Serving Page' })
      .first()
      .click();
    await main.locator(`tr[data-endpoint="${NAME}"] a.jp-serving-link`).click();
    await main.locator(`.jp-serving-detail[data-endpoint="${NAME}"]`).waitFor();
  });

  await step('rollout-walks-its-steps-to-100', async () => {
    await tab('rollout');
    // Bad steps are refused in the form, before any request.
    await startRollout('steady', '50, 10, 100', 3);
    await main
      .locator('.jp-serving-rollout-start .jp-serving-field-error', { hasText: 'increase' })
      .waitFor();
    await startRollout('steady', '10, 50, 100', 3);
    await rolloutState('SUCCEEDED', SETTLE_MS);
    const types = await timelineTypes();
    for (const t of ['ROLLOUT_STARTED', 'ROLLOUT_STEP', 'ROLLOUT_SUCCEEDED']) {
      if (!types.includes(t)) {
        throw new Error(`the timeline lacks ${t}: ${JSON.stringify(types)}`);
      }
    }
    const steps = await main
      .locator('.jp-serving-rollout-step')
      .evaluateAll(items =>
        items.map(i => `${i.getAttribute('data-step')}:${i.getAttribute('data-status')}`)
      );
    if (JSON.stringify(steps) !== JSON.stringify(['10:done', '50:done', '100:done'])) {
      throw new Error(`steps read wrong: ${JSON.stringify(steps)}`);
    }
    await shot('rollout-succeeded');
  });

  await step('running-rollout-pause-resume-cancel', async () => {
    await startRollout('challenger', '20, 50, 100', 600);
    await rolloutState('RUNNING');
    await main.locator('.jp-serving-rollout-step[data-step="20"][data-status="current"]').waitFor();
    await main.locator('.jp-serving-rollout-step[data-step="50"][data-status="next"]').waitFor();
    // The guard's estimate and interval appear once it has counted answers.
    await main
      .locator('.jp-serving-guards tr[data-guard="error_rate_increase"] td[data-interval]')
      .waitFor();
    // Some evidence first, so the screenshot shows intervals narrowing (the step lasts 600 s).
    await main
      .locator('[data-rollout-requests]', { hasText: /challenger: \d{2,} requests/ })
      .waitFor();
    await shot('rollout-running');
    await main.locator('button[name="rollout-pause"]').click();
    await rolloutState('PAUSED', 30000);
    await main.locator('.jp-serving-timeline li[data-event="ROLLOUT_PAUSED"]').waitFor();
    await main.locator('button[name="rollout-resume"]').click();
    await rolloutState('RUNNING', 30000);
    await main.locator('.jp-serving-timeline li[data-event="ROLLOUT_RESUMED"]').waitFor();
    await main.locator('button[name="rollout-cancel"]').click();
    await rolloutState('CANCELED', 30000);
    await main.locator('[data-rollout-reason]', { hasText: 'Canceled' }).waitFor();
  });

  await step('failing-challenger-is-rolled-back', async () => {
    await startRollout('challenger', '20, 50, 100', 600);
    await rolloutState('RUNNING');
    writeFileSync(GATE, 'open\n'); // from now on the load sends inputs the challenger fails on
    await rolloutState('ROLLED_BACK', SETTLE_MS);
    const reason = await main.locator('[data-rollout-reason]').textContent();
    if (!/Rolled back: Error rate/.test(reason)) {
      throw new Error(`unexpected rollback reason: ${reason}`);
    }
    await main
      .locator(
        '.jp-serving-timeline li[data-event="ROLLOUT_ROLLED_BACK"] .jp-serving-event-message',
        {
          hasText: 'Error rate'
        }
      )
      .waitFor();
    const breached = main.locator('.jp-serving-guards tr[data-guard="error_rate_increase"]');
    await breached.locator('.jp-serving-severity-error', { hasText: 'breached' }).waitFor();
    const interval = await breached.locator('td[data-interval]').textContent();
    if (!/^\[\+\d/.test(interval)) {
      throw new Error(`the breached interval should lie above 0: ${interval}`);
    }
    await main.locator('.jp-serving-rollout-step[data-step="50"][data-status="skipped"]').waitFor();
    writeFileSync(join(ARTIFACTS, 'rolled-back-timeline.txt'), (await timelineTypes()).join('\n'));
    await shot('rollout-rolled-back');
  });

  await step('shadow-view-shows-agreement', async () => {
    await tab('shadow');
    await main
      .locator('select[name="shadow-entity"] option[value="current"]')
      .waitFor({ state: 'attached' });
    await main.locator('select[name="shadow-entity"]').selectOption('current');
    await main.locator('input[name="shadow-percentage"]').fill('100');
    await main.locator('button[name="shadow-save"]').click();
    await main
      .locator('.jp-serving-shadow-view[data-shadow="current"]')
      .waitFor({ timeout: 30000 });
    // Live (steady) and shadow (current) are the same model: every paired answer agrees.
    const row = main.locator('.jp-serving-shadow-comparison tr[data-shadow-entity="current"]');
    await row.waitFor({ timeout: SETTLE_MS });
    const agreement = await row.getAttribute('data-agreement');
    if (Number(agreement) !== 1) {
      throw new Error(`live and shadow answers should agree: ${agreement}`);
    }
    const cell = await row.locator('td[data-cell="agreement"]').textContent();
    if (cell.trim() !== '100.0%') {
      throw new Error(`agreement reads ${cell}`);
    }
    await shot('shadow-agreement');
  });

  await step('overview-live-verdict', async () => {
    await tab('overview');
    const card = main.locator(
      '[data-live-verdict] .jp-serving-verdict-card[data-entity="challenger"]'
    );
    await card.waitFor({ timeout: 60000 });
    await main
      .locator(
        '[data-live-verdict] .jp-serving-verdict-card[data-entity="challenger"][data-verdict-word="worse"]'
      )
      .waitFor({ timeout: 60000 });
    const headline = await card.locator('.jp-serving-verdict-headline').textContent();
    if (!/challenger worse than steady/.test(headline)) {
      throw new Error(`verdict headline: ${headline}`);
    }
    const error = card.locator('tr[data-guard="error_rate_increase"]');
    await error.locator('td[data-estimate]').waitFor();
    const interval = await error.locator('td[data-interval]').textContent();
    if (!/^\[\+\d/.test(interval) || (await error.getAttribute('data-direction')) !== 'worse') {
      throw new Error(`the verdict's error interval should lie above 0: ${interval}`);
    }
    await shot('overview-verdict');
  });

  await step('shadow-stops', async () => {
    await tab('shadow');
    await main.locator('button[name="shadow-stop"]').click();
    await main.locator('.jp-serving-shadow-view[data-shadow=""]').waitFor({ timeout: 30000 });
  });
});
