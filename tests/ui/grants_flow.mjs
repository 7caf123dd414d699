// An update refused by the Unity Catalog creator re-check, in a real JupyterLab driven by
// playwright-core with Debian's chromium. Started by tests/ui/test_page_grants.py, which owns jupyter
// lab, has a service principal create the endpoint on a three-level model and then revokes its
// EXECUTE. Exits non-zero on the first failed step.
//
// Environment: LAB_URL (with trailing slash), LAB_TOKEN, ARTIFACTS, CHROMIUM_PATH, ENDPOINT,
// UC_MODEL (the served model's full name), CREATOR (the service principal's display name).
// NN-update-refused.png is docs/screenshots/grant-refused.png.

import { LAB_URL, TOKEN, need, openFlow } from './flow.mjs';

const NAME = need('ENDPOINT');
const UC_MODEL = need('UC_MODEL');
const CREATOR = need('CREATOR');

// 1600x1000: the size of the screenshots in docs/screenshots.
const { page, step, run } = await openFlow({ viewport: { width: 1600, height: 1000 } });
const main = page.locator('#jupyter-serving-page');

async function openPalette() {
  const input = page.locator('.lm-CommandPalette-input');
  for (let attempt = 1; attempt <= 10 && !(await input.isVisible()); attempt++) {
    await page.locator('#jp-main-dock-panel .lm-TabBar').first().click();
    await page.keyboard.press('Control+Shift+C');
    await input.waitFor({ state: 'visible', timeout: 2000 }).catch(() => undefined);
  }
  return input;
}

await run(async () => {
  await step('lab-loaded', async () => {
    await page.goto(`${LAB_URL}lab?reset&token=${TOKEN}`); // reset: no layout an earlier flow on this Lab left
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
  });

  await step('endpoint-page', async () => {
    const input = await openPalette();
    await input.fill('Open Model Serving Page');
    await page
      .locator('.lm-CommandPalette-item', { hasText: 'Open Model Serving Page' })
      .first()
      .click();
    await main.locator(`tr[data-endpoint="${NAME}"] a.jp-serving-link`).click();
    await main.locator('.jp-serving-tabs').waitFor();
  });

  await step('update-refused', async () => {
    await main.locator('button[name="edit"]:not([disabled])').click({ timeout: 60000 });
    await main.locator('form.jp-serving-form').waitFor();
    await main
      .locator(`select[name="entities.0.model"] option[value="${UC_MODEL}"]`)
      .waitFor({ state: 'attached' });
    await main.locator('input[name="entities.0.scaleToZero"]').check();
    await main.locator('button[name="submit"]').click();
    const error = main.locator('.jp-serving-field-error[data-field="form"]');
    await error.waitFor();
    const text = (await error.textContent()) ?? '';
    const expected = [
      'PERMISSION_DENIED: ',
      `principal '${CREATOR}'`,
      `does not have EXECUTE on function '${UC_MODEL}'`,
      'delete the endpoint and recreate it'
    ];
    const missing = expected.filter(part => !text.includes(part));
    if (missing.length) {
      throw new Error(`the form shows ${JSON.stringify(text)}, without ${JSON.stringify(missing)}`);
    }
    // Seen without scrolling (the submit button is at the bottom of a long form), and the form
    // stays open with Update offered again, so the change is not lost.
    await page
      .waitForFunction(
        () => {
          const el = document.querySelector(
            '#jupyter-serving-page .jp-serving-field-error[data-field="form"]'
          );
          const r = el?.getBoundingClientRect();
          const hit = r && document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return !!hit && el.contains(hit);
        },
        null,
        { timeout: 5000 }
      )
      .catch(() => {
        throw new Error('the message is not in view');
      });
    await main.locator('button[name="submit"]:not([disabled])', { hasText: 'Update' }).waitFor();
    if (!(await main.locator('input[name="entities.0.scaleToZero"]').isChecked())) {
      throw new Error('the refused change was dropped from the form');
    }
  });
});
