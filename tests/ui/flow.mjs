// What both browser flows share: the environment they are started with, a headless Debian chromium
// driven by playwright-core, a log of what the page said, and `step`, which screenshots each step
// (NN-name.png, or NN-name-FAILED.png and a rethrow on the first failure). `finish` writes the log
// and exits with the flow's status, so the Python test that started the script sees it.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export function need(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

export const LAB_URL = need('LAB_URL');
export const TOKEN = need('LAB_TOKEN');
export const ARTIFACTS = need('ARTIFACTS');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Open a browser page; `logConsole(msg)` says which console messages the log keeps. */
export async function openFlow({ viewport, logConsole = msg => msg.type() === 'error' }) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const log = [];
  const note = line => {
    const stamped = `[${new Date().toISOString()}] ${line}`;
    log.push(stamped);
    console.log(stamped);
  };
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-dev-shm-usage'
    ]
  });
  const page = await browser.newPage({ viewport });
  page.setDefaultTimeout(30000);
  page.on('console', msg => {
    if (logConsole(msg)) {
      log.push(`console.${msg.type()}: ${msg.text()}`);
    }
  });
  page.on('pageerror', err => log.push(`pageerror: ${err.stack || err.message}`));

  let stepNo = 0;
  async function step(name, fn) {
    stepNo += 1;
    const tag = `${String(stepNo).padStart(2, '0')}-${name}`;
    const started = Date.now();
    try {
      await fn();
      await page.screenshot({ path: join(ARTIFACTS, `${tag}.png`) });
      note(`ok   ${tag} (${Date.now() - started} ms)`);
    } catch (err) {
      await page.screenshot({ path: join(ARTIFACTS, `${tag}-FAILED.png`) }).catch(() => undefined);
      note(`FAIL ${tag}: ${err && err.stack ? err.stack : err}`);
      throw err;
    }
  }

  /** An extra screenshot inside the current step: NN-name.png. */
  async function shot(name) {
    await page.screenshot({
      path: join(ARTIFACTS, `${String(stepNo).padStart(2, '0')}-${name}.png`)
    });
  }

  /** Run the flow's steps; write browser.log and exit 0, or 1 after the first failed step. */
  async function run(steps) {
    let exitCode = 0;
    try {
      await steps();
    } catch {
      exitCode = 1;
    } finally {
      writeFileSync(join(ARTIFACTS, 'browser.log'), log.join('\n') + '\n');
      await browser.close();
    }
    process.exit(exitCode);
  }

  return { page, log, note, step, shot, run };
}
