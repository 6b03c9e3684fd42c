// The DAEF web console in a real browser: Debian's Chromium driven by playwright-core against a
// live gateway that runs with API tokens. The Rust system test `console_browser` starts the
// gateway (memory, and Postgres + Redis) and runs this script with:
//   DAEF_URL          the gateway, e.g. http://127.0.0.1:41234
//   DAEF_CONFIRM      the dead-letter confirmation token the gateway was given
//   DAEF_SCREENSHOTS  where to save screenshots (docs/console/ for the memory run)
// Tokens (DAEF_API_TOKENS): op (operator), wrk (worker), acme and beta (tenants).
// Admin limits: max batch 2, confirmation from 2 tasks, 2 requeue requests per minute.

import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BASE = process.env.DAEF_URL;
const CONFIRM = process.env.DAEF_CONFIRM;
const SHOTS = process.env.DAEF_SCREENSHOTS;
assert.ok(BASE && CONFIRM && SHOTS, 'DAEF_URL, DAEF_CONFIRM and DAEF_SCREENSHOTS must be set');
mkdirSync(SHOTS, { recursive: true });

const WORKER = 'console-worker';
const WAIT = 15_000;

function step(what) {
  console.log(`- ${what}`);
}

async function api(method, path, token, body) {
  const response = await fetch(BASE + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text };
}

async function submit(token, body) {
  const r = await api('POST', '/v1/jobs', token, body);
  assert.equal(r.status, 202, `submit: ${r.text}`);
  return r.json.job_id;
}

async function job(id) {
  const r = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`, 'op');
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const single = (id, maxRetries) => ({
  type: 'console-test',
  tasks: [{ task_id: id, type: 'echo', max_retries: maxRetries }],
});

// The test's worker: polls, fails the tasks named in `failing`, completes the rest.
async function work(failing) {
  const r = await api('GET', `/v1/workers/${WORKER}/assignments?max_tasks=20&wait_ms=500`, 'wrk');
  assert.equal(r.status, 200, r.text);
  for (const a of r.json.assignments) {
    const fail = failing.has(`${a.job_id}/${a.task_id}`);
    const report = await api('POST', '/v1/tasks/report', 'wrk', {
      worker_id: WORKER, job_id: a.job_id, task_id: a.task_id, lease_id: a.lease_id,
      status: fail ? 'Failed' : 'Completed',
      error: fail ? `simulated failure of ${a.task_id}` : undefined,
      output_artifact_uri: fail ? undefined : `s3://bucket/${a.task_id}.out`,
    });
    assert.equal(report.status, 200, report.text);
  }
  return r.json.assignments.length;
}

async function workUntil(failing, done) {
  const deadline = Date.now() + WAIT * 2;
  while (!(await done())) {
    assert.ok(Date.now() < deadline, 'the worker did not get there in time');
    await work(failing);
  }
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function login(browser, token) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, timezoneId: 'Europe/Paris' });
  const page = await context.newPage();
  await page.goto(`${BASE}/console/`);
  assert.match(page.url(), /\/console\/login$/, 'an anonymous visit goes to the login page');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${BASE}/console/`);
  return { context, page };
}

// A page on another origin whose form posts to the console as soon as it loads.
function evilSite(action, fields) {
  const inputs = Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${v}">`).join('');
  const html = `<!doctype html><form id="f" method="post" action="${action}">${inputs}</form>` +
    '<script>document.getElementById("f").submit()</script>';
  const server = http.createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

try {
  const reg = await api('POST', '/v1/workers/register', 'wrk', {
    worker_id: WORKER, cpu: 4, memory: '8Gi', gpu: false, models: ['llama3-8b'], tools: ['bash', 'python'], locality: 'eu-west-1',
  });
  assert.equal(reg.status, 200, reg.text);
  await api('POST', `/v1/workers/${WORKER}/heartbeat`, 'wrk', { running_tasks: 0, health: 'healthy' });

  step('log in as the operator (the login page first)');
  const loginContext = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const loginPage = await loginContext.newPage();
  await loginPage.goto(`${BASE}/console/`);
  await shot(loginPage, 'login');
  await loginPage.getByLabel('API token').fill('not-a-token');
  await loginPage.getByRole('button', { name: 'Log in' }).click();
  await loginPage.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
  await loginContext.close();
  const { context: opContext, page } = await login(browser, 'op');
  const cookies = await opContext.cookies();
  const session = cookies.find((c) => c.name === 'daef_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', 'HttpOnly, SameSite=Strict session cookie');
  assert.equal(await page.locator('.banner').count(), 0, 'no auth-off banner with tokens set');

  step('jobs submitted through the API appear without a reload');
  await page.goto(`${BASE}/console/jobs`);
  await page.evaluate(() => { window.stillTheSamePage = true; });
  const fresh = [await submit('acme', { type: 'demo', input: 'hello' }), await submit('beta', { type: 'demo', input: 'hi' })];
  for (const id of fresh) {
    await page.locator(`#live a:text-is("${id}")`).waitFor({ timeout: WAIT });
  }
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, 'the page was not reloaded');
  const time = page.locator('#live time').first();
  assert.match(await time.getAttribute('title'), /UTC$/, 'UTC on hover');
  assert.notEqual(await time.textContent(), await time.getAttribute('datetime'), 'shown in the browser time zone');
  await workUntil(new Set(), async () => (await job(fresh[0])).status === 'Completed' && (await job(fresh[1])).status === 'Completed');

  step('a three-task job: its DAG and task states, live');
  const dagJob = await submit('acme', {
    type: 'pipeline',
    tasks: [
      { task_id: 'extract', type: 'echo' },
      { task_id: 'transform', type: 'echo', dependencies: ['extract'] },
      { task_id: 'load', type: 'echo', dependencies: ['extract'], max_retries: 0 },
    ],
  });
  const x1 = await submit('acme', single('flaky-1', 0));
  const x2 = await submit('beta', single('flaky-2', 0));
  await page.goto(`${BASE}/console/jobs/${dagJob}`);
  const node = (task) => page.locator(`#dag g.node[data-task="${task}"]`);
  assert.equal(await page.locator('#dag g.node').count(), 3);
  assert.equal(await page.locator('#dag path.edge').count(), 2);
  for (const task of ['extract', 'transform', 'load']) {
    assert.equal(await node(task).getAttribute('data-status'), 'Queued');
  }
  await page.evaluate(() => { window.stillTheSamePage = true; });
  const failing = new Set([`${dagJob}/load`, `${x1}/flaky-1`, `${x2}/flaky-2`]);
  await workUntil(failing, async () => (await job(dagJob)).status === 'Failed' && (await job(x1)).status === 'Failed' && (await job(x2)).status === 'Failed');
  await page.locator('#dag g.node[data-task="extract"][data-status="Completed"]').waitFor({ timeout: WAIT });
  await page.locator('#dag g.node[data-task="transform"][data-status="Completed"]').waitFor({ timeout: WAIT });
  await page.locator('#dag g.node[data-task="load"][data-status="Failed"]').waitFor({ timeout: WAIT });
  await page.locator('#job-status .status:text-is("Failed")').waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, 'updated from the event stream, not reloaded');
  const loadRow = page.locator('#tasks tr[data-task="load"]');
  assert.match(await loadRow.textContent(), /simulated failure of load/);
  assert.match(await page.locator('#tasks tr[data-task="extract"]').textContent(), /s3:\/\/bucket\/extract\.out/);
  await shot(page, 'job');

  step('dead letters: dry run, the confirmation step, split requests, requeue, a 429, discard');
  await page.goto(`${BASE}/console/dead-letters`);
  assert.equal(await page.locator('input[name=task]').count(), 3);
  await page.getByLabel('every listed dead letter (3)').check();
  await page.getByRole('button', { name: 'Dry run' }).click();
  assert.match(await page.locator('#requeue-result').textContent(), /Dry run: 3 of 3 .*\(2 requests\)/);
  await shot(page, 'dead-letters');
  await page.getByLabel('every listed dead letter (3)').check();
  await page.getByRole('button', { name: 'Requeue' }).click();
  await page.getByLabel('Confirmation token').fill('wrong');
  await page.getByRole('button', { name: 'Requeue' }).click();
  assert.match(await page.getByRole('alert').textContent(), /confirmation token required/);
  await page.getByLabel('Confirmation token').fill(CONFIRM);
  await page.getByRole('button', { name: 'Requeue' }).click();
  assert.match(await page.locator('#requeue-result').textContent(), /Requeued 3 of 3 .*\(2 requests\)/);
  // The three run again: flaky-2 fails once more, the others complete.
  await workUntil(new Set([`${x2}/flaky-2`]), async () => (await job(dagJob)).status === 'Completed' && (await job(x1)).status === 'Completed' && (await job(x2)).status === 'Failed');
  await page.goto(`${BASE}/console/dead-letters`);
  await page.locator('input[name=task]').first().check();
  await page.getByRole('button', { name: 'Requeue' }).click();
  assert.match(await page.locator('#retry-after').textContent(), /try again in \d+ s/);
  // A discard has its own rate limit: flaky-2 is given up on, and its job stays Failed.
  await page.goto(`${BASE}/console/dead-letters`);
  await page.locator('input[name=task]').first().check();
  await page.getByRole('button', { name: 'Discard' }).click();
  assert.match(await page.locator('#requeue-result').textContent(), /Discarded 1 of 1 selected tasks/);
  assert.equal(await page.locator('input[name=task]').count(), 0);
  assert.equal((await job(x2)).status, 'Failed');
  await page.goto(`${BASE}/console/jobs/${dagJob}`);
  await page.locator('#job-status .status:text-is("Completed")').waitFor();
  assert.equal(await page.locator('#dag g.node[data-status="Completed"]').count(), 3);

  step('the audit log: the console\'s actions, the chain verified, CSV');
  await page.goto(`${BASE}/console/audit?action=dead_letter_requeue`);
  assert.ok(await page.locator('td:text-is("dead_letter_requeue")').count() >= 3);
  assert.ok(await page.locator('td:text-is("rate_limited")').count() >= 1);
  await page.getByRole('link', { name: 'Verify the chain' }).click();
  assert.match(await page.locator('#verification').textContent(), /The chain is intact/);
  assert.ok(Number(await page.locator('#checked').textContent()) > 5);
  await shot(page, 'audit');
  const csv = await page.request.get(BASE + await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href'));
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()['content-disposition'], /attachment/);
  assert.match(await csv.text(), /dead_letter_requeue/);

  step('workers, with capacity and liveness');
  await page.goto(`${BASE}/console/workers`);
  const workerRow = page.locator(`tr:has(code:text-is("${WORKER}"))`);
  assert.match(await workerRow.textContent(), /alive.*healthy.*8Gi.*llama3-8b.*bash, python.*eu-west-1/s);
  await shot(page, 'workers');

  step('schedules: listed, paused and resumed from their page');
  const made = await api('POST', '/v1/schedules', 'acme', {
    schedule_id: 'nightly-report', cron: '0 3 * * *', job: { type: 'batch_analysis', input: 'Analyze the day' },
  });
  assert.equal(made.status, 201, made.text);
  const paused = await api('POST', '/v1/schedules', 'op', {
    schedule_id: 'quarter-hourly', cron: '*/15 9-17 * * MON-FRI', job: { type: 'chat', input: 'digest', tenant: 'beta' }, paused: true,
  });
  assert.equal(paused.status, 201, paused.text);
  await page.goto(`${BASE}/console/schedules`);
  const nightly = page.locator('tr:has(code:text-is("nightly-report"))');
  assert.match(await nightly.textContent(), /acme.*0 3 \* \* \*.*batch_analysis.*running/s);
  await nightly.getByRole('button', { name: /Pause/ }).click();
  assert.match(await page.locator('.notice').textContent(), /Paused nightly-report/);
  assert.equal((await api('GET', '/v1/schedules/nightly-report', 'op')).json.paused, true);
  await page.locator('tr:has(code:text-is("nightly-report"))').getByRole('button', { name: /Resume/ }).click();
  assert.match(await page.locator('.notice').textContent(), /Resumed nightly-report: its next tick is/);
  assert.equal((await api('GET', '/v1/schedules/nightly-report', 'op')).json.paused, false);
  await shot(page, 'schedules');

  step('cancel a selection from the job list');
  const toCancel = [await submit('acme', single('idle-1', 2)), await submit('acme', single('idle-2', 2))];
  await page.goto(`${BASE}/console/jobs?tenant=acme`);
  for (const id of toCancel) {
    await page.getByLabel(`Select job ${id}`).check();
  }
  await page.getByRole('button', { name: 'Cancel selected jobs' }).click();
  assert.match(await page.locator('.notice').textContent(), /Canceled 2 of 2 selected jobs/);
  for (const id of toCancel) {
    assert.equal((await job(id)).status, 'Canceled');
  }
  await shot(page, 'jobs');

  step('the overview');
  await page.goto(`${BASE}/console/`);
  assert.match(await page.locator('.tiles').textContent(), /Completed jobs/);
  assert.match(await page.locator('.tiles').textContent(), /Live workers/);
  await shot(page, 'overview');

  step('keyboard: the first Tab reaches the skip link');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');

  step('a cross-origin form post is refused and changes nothing');
  const target = await submit('acme', single('target', 2));
  const evil = await evilSite(`${BASE}/console/jobs/cancel`, { job_id: target });
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  const refused = page.waitForResponse((r) => r.url() === `${BASE}/console/jobs/cancel`);
  await page.goto(evilUrl);
  assert.equal((await refused).status(), 403);
  await page.getByText('Cross-origin request refused').waitFor();
  evil.close();
  const direct = await page.request.post(`${BASE}/console/jobs/cancel`, {
    headers: { origin: 'http://evil.example' }, form: { job_id: target },
  });
  assert.equal(direct.status(), 403);
  assert.equal((await job(target)).status, 'Queued', 'the job was not canceled');

  step('a tenant sees only its own jobs and no admin page');
  const betaJob = await submit('beta', { type: 'demo', input: 'private' });
  const { context: acmeContext, page: acme } = await login(browser, 'acme');
  const nav = await acme.locator('header nav').textContent();
  assert.ok(nav.includes('Jobs') && !nav.includes('Dead letters') && !nav.includes('Audit'));
  let r = await acme.goto(`${BASE}/console/jobs/${betaJob}`);
  assert.equal(r.status(), 404, "another tenant's job is not found");
  r = await acme.goto(`${BASE}/console/jobs/${target}`);
  assert.equal(r.status(), 200, 'its own job opens');
  for (const admin of ['dead-letters', 'audit', 'audit/verify']) {
    r = await acme.goto(`${BASE}/console/${admin}`);
    assert.equal(r.status(), 403, `${admin} needs the operator scope`);
  }
  r = await acme.goto(`${BASE}/console/jobs?tenant=beta`);
  assert.equal(r.status(), 403, "another tenant's filter");
  await acme.goto(`${BASE}/console/jobs`);
  assert.equal(await acme.locator(`#live a:text-is("${betaJob}")`).count(), 0);
  await acmeContext.close();

  step('bad input is a clear 4xx and changes nothing');
  const deadBefore = (await api('GET', '/v1/admin/queue/dead-letter', 'op')).json.tasks.length;
  for (const [path, status] of [
    ['/console/jobs?status=Bogus', 400], ['/console/workers?offset=x', 400],
    ['/console/audit?from=yesterday', 400], ['/console/jobs/no-such-job', 404], ['/console/nowhere', 404],
  ]) {
    assert.equal((await page.request.get(BASE + path)).status(), status, path);
  }
  const malformed = await page.request.post(`${BASE}/console/dead-letters`, {
    headers: { origin: BASE }, form: { task: 'not-json', action: 'requeue' },
  });
  assert.equal(malformed.status(), 400);
  assert.equal((await api('GET', '/v1/admin/queue/dead-letter', 'op')).json.tasks.length, deadBefore);

  step('log out ends the session');
  await page.goto(`${BASE}/console/`);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(`${BASE}/console/login`);
  await page.goto(`${BASE}/console/jobs`);
  assert.match(page.url(), /\/console\/login$/);
  await opContext.close();
  console.log('console browser test passed');
} finally {
  await browser.close();
}
