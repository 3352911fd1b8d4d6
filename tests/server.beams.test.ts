// The API's beam-search settings: num_beams / length_penalty from the served config as defaults,
// overridable per request, and refused by name together with sampling.
import { describe, expect, it } from 'vitest';
import { FALLBACK_DEFAULTS, parseChatRequest } from '../src/server/protocol';

const body = (extra: Record<string, unknown>) => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra });

describe('num_beams in chat requests', () => {
  it('takes the config defaults, lets a request override them, and refuses beams with sampling', () => {
    const defaults = { ...FALLBACK_DEFAULTS, temperature: 0, numBeams: 3, lengthPenalty: 0.8 };
    expect(parseChatRequest(body({}), defaults).request).toMatchObject({ numBeams: 3, lengthPenalty: 0.8 });
    expect(parseChatRequest(body({ num_beams: 5, length_penalty: 2 }), defaults).request).toMatchObject({ numBeams: 5, lengthPenalty: 2 });
    expect(parseChatRequest(body({}), FALLBACK_DEFAULTS).request.numBeams).toBeUndefined();
    expect(() => parseChatRequest(body({ temperature: 0.7 }), defaults)).toThrow(/'num_beams' 3 asks for beam search, which does not sample: set 'temperature' to 0/);
    expect(() => parseChatRequest(body({ num_beams: 0 }), defaults)).toThrow(/Invalid 'num_beams': 0 is less than the minimum of 1/);
  });
});
