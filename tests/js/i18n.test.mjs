// Every error code the server can send has a sentence in every language of the interface (a new code in
// core/errors.py reaches protocol.js through the generator, and then fails here until it is translated).
import './browser_env.mjs';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DICTS, errorText, setLang } from '../../core/web/js/i18n.js';
import { ERROR_CODE } from '../../core/web/js/protocol.js';

test('every error code is translated in every language', () => {
  const missing = [];
  for (const [lang, dict] of Object.entries(DICTS)) {
    for (const code of Object.values(ERROR_CODE)) if (!(`err_${code}` in dict)) missing.push(`${lang}: err_${code}`);
  }
  assert.deepEqual(missing, []);
});

test('an invalid field picks its own sentence; an unknown code still says which', () => {
  setLang('en');
  assert.equal(errorText({ code: ERROR_CODE.INVALID, message: 'password: too short' }), DICTS.en.err_invalid_password);
  assert.equal(errorText({ code: ERROR_CODE.BLOCKED, message: 'x' }), DICTS.en.err_blocked);
  assert.match(errorText({ code: 'brand_new', message: 'x' }), /brand_new/);
});
