// The Query tab streaming an agent's answer, in a real JupyterLab driven by playwright-core with
// Debian's chromium. Started by tests/ui/test_page_stream.py, which owns jupyter lab and serves the
// fixture ResponsesAgent (tests/model_code/responses_agent.py: "echo:" then the question's words,
// one chunk each, `custom_inputs.pause` seconds apart). Exits non-zero on the first failed step.
//
// Environment: LAB_URL (with trailing slash), LAB_TOKEN, ARTIFACTS, CHROMIUM_PATH, ENDPOINT,
// STOP_MARKER (the file the agent writes when the stream it was writing is closed by Stop).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ARTIFACTS, LAB_URL, TOKEN, need, openFlow } from './flow.mjs';

const NAME = need('ENDPOINT');
const STOP_MARKER = need('STOP_MARKER');
const WORDS = 'one two three four five six';
const FULL = `echo: ${WORDS}`;

const { page, step, shot, run } = await openFlow({ viewport: { width: 1600, height: 1000 } });
const main = page.locator('#jupyter-serving-page');
const answer = main.locator('.jp-serving-stream-result');
const text = () => answer.locator('pre.jp-serving-stream-text').textContent();

async function openPalette() {
  const input = page.locator('.lm-CommandPalette-input');
  for (let attempt = 1; attempt <= 10 && !(await input.isVisible()); attempt++) {
    await page.locator('#jp-main-dock-panel .lm-TabBar').first().click();
    await page.keyboard.press('Control+Shift+C');
    await input.waitFor({ state: 'visible', timeout: 2000 }).catch(() => undefined);
  }
  return input;
}

/** Type a question for the agent, with its pause between chunks and other custom inputs. */
async function ask(custom) {
  const body = { input: [{ role: 'user', content: WORDS }], custom_inputs: custom };
  await main.locator('textarea[name="request"]').fill(JSON.stringify(body));
  await main.locator('button[name="send-query"]').click();
}

/**
 * The answer's text while the stream is still running (no end state yet): evaluated in the page,
 * so the text and the state are read at the same instant. Non-empty and short of the full answer.
 */
async function partialWhileStreaming() {
  const handle = await page.waitForFunction(
    full => {
      const result = document.querySelector('#jupyter-serving-page .jp-serving-stream-result');
      const shown = result?.querySelector('pre.jp-serving-stream-text')?.textContent ?? '';
      return result?.getAttribute('data-stream') === 'streaming' && shown && shown !== full
        ? shown
        : null;
    },
    FULL,
    { timeout: 60000 }
  );
  return handle.jsonValue();
}

await run(async () => {
  await step('lab-loaded', async () => {
    await page.goto(`${LAB_URL}lab?reset&token=${TOKEN}`); // reset: no layout an earlier flow on this Lab left
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
  });

  await step('query-tab', async () => {
    const input = await openPalette();
    await input.fill('Open Model Serving Page');
    await page
      .locator('.lm-CommandPalette-item', { hasText: 'Open Model Serving Page' })
      .first()
      .click();
    await main.locator(`tr[data-endpoint="${NAME}"] a.jp-serving-link`).click();
    await main.locator('button[name="tab-query"]').click();
    await main.locator('.jp-serving-tab-body[data-tab="query"]').waitFor();
    // An agent: the request is pre-filled in its `input` format, and streaming is on by default.
    await page.waitForFunction(() =>
      /"input"/.test(
        document.querySelector('#jupyter-serving-page textarea[name="request"]')?.value ?? ''
      )
    );
    if (!(await main.locator('input[name="stream"]').isChecked())) {
      throw new Error('streaming should be on by default for an agent');
    }
    // An agent answers the OpenAI client: its snippet, exactly as shown, for test_page_stream.py
    // to run (the token is read from the environment).
    await main.locator('button[name="snippet-openai"]').click();
    const code = await main.locator('pre.jp-serving-snippet[data-snippet="openai"]').textContent();
    if (code.includes(TOKEN)) {
      throw new Error('the OpenAI snippet prints the token');
    }
    writeFileSync(join(ARTIFACTS, 'snippet-openai.txt'), code);
  });

  await step('stream-grows', async () => {
    await ask({ pause: 0.4 });
    const first = await partialWhileStreaming();
    if (!FULL.startsWith(first)) {
      throw new Error(`the first part ${JSON.stringify(first)} is not how the answer starts`);
    }
    await main.locator('button[name="stop-query"]').waitFor();
    await shot('streaming');
    await main.locator('.jp-serving-stream-result[data-stream="done"]').waitFor({ timeout: 60000 });
    const final = await text();
    if (final !== FULL) {
      throw new Error(`expected ${JSON.stringify(FULL)}, the page shows ${JSON.stringify(final)}`);
    }
    if (await main.locator('button[name="stop-query"]').count()) {
      throw new Error('Stop is still offered after the stream ended');
    }
  });

  await step('stream-stopped', async () => {
    await ask({ pause: 1.5, closed_marker: STOP_MARKER });
    await partialWhileStreaming();
    await main.locator('button[name="stop-query"]').click();
    await main
      .locator('.jp-serving-stream-result[data-stream="stopped"]')
      .waitFor({ timeout: 30000 });
    const kept = await text();
    if (!kept || kept === FULL || !FULL.startsWith(kept)) {
      throw new Error(
        `a stopped stream should keep the part read so far, got ${JSON.stringify(kept)}`
      );
    }
    await main.locator('button[name="send-query"]:not([disabled])').waitFor();
  });

  await step('stream-error', async () => {
    await ask({ fail_after: 2 });
    await main
      .locator('.jp-serving-stream-result[data-stream="error"]')
      .waitFor({ timeout: 60000 });
    const error = await answer.locator('pre.jp-mod-error[data-error-code]').textContent();
    if (!error) {
      throw new Error('the error event is not shown');
    }
    const kept = await text();
    if (kept !== 'echo: one') {
      throw new Error(`the chunks before the error should stay, got ${JSON.stringify(kept)}`);
    }
  });
});
