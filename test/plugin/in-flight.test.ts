/**
 * InFlightRequests: what drain() sees is exactly the requests whose `done` has not settled.
 */
import { expect } from 'chai';
import { InFlightRequests } from '../../plugin/in-flight.js';

function deferred(name: string) {
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  return { entry: { name, done }, settle };
}

/** Lets the `finally` callbacks of settled requests run. */
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe('InFlightRequests', () => {
  it('holds each request until its done settles, in any order', async () => {
    const inFlight = new InFlightRequests<{ name: string; done: Promise<void> }>();
    const [a, b, c] = ['a', 'b', 'c'].map(deferred);
    for (const request of [a!, b!, c!]) inFlight.track(request.entry);
    expect(inFlight.size).to.equal(3);
    expect(inFlight.entries().map((entry) => entry.name)).to.have.members(['a', 'b', 'c']);

    b!.settle();
    await settled();
    expect(inFlight.size).to.equal(2);
    expect(inFlight.entries().map((entry) => entry.name)).to.have.members(['a', 'c']);

    a!.settle();
    c!.settle();
    await settled();
    expect(inFlight.size).to.equal(0);
    expect(inFlight.entries()).to.deep.equal([]);
  });

  it('reuses released slots: many requests over time, never more slots than were in flight at once', async () => {
    const inFlight = new InFlightRequests<{ name: string; done: Promise<void> }>();
    const open: Array<ReturnType<typeof deferred>> = [];
    for (let i = 0; i < 1_000; i++) {
      const request = deferred(`r${i}`);
      inFlight.track(request.entry);
      open.push(request);
      // At most 5 in flight: the oldest settles when a sixth arrives.
      if (open.length > 5) {
        open.shift()!.settle();
        await settled();
      }
      expect(inFlight.size).to.equal(open.length);
    }
    expect(inFlight.entries().map((entry) => entry.name)).to.have.members(open.map((request) => request.entry.name));
    expect((inFlight as unknown as { slots: unknown[] }).slots.length).to.be.at.most(6);
  });
});
