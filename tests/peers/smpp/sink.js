// A fast SMSC sink on the npm package `smpp`, for benchmarks: takes any bind, answers
// every submit_sm at once with a hex id, sends a DELIVRD receipt per submit_sm when
// `--receipts` is given, and prints once a second what it took.
//
//   NODE_PATH=~/.cache/switchboard/peers/node/node_modules node sink.js PORT [--receipts]
//
// First line on stdout: `sink listening on 127.0.0.1:PORT`; then
// `t=Ns submit_sm/s=... submit_sm=... receipts=...` lines.
'use strict';
const smpp = require('smpp');

const port = Number(process.argv[2] || 2776);
const receipts = process.argv.includes('--receipts');
let submits = 0;
let receiptCount = 0;
let id = Math.floor(Date.now() / 1000) * 1048576;

const server = smpp.createServer((session) => {
  const bind = (pdu) => session.send(pdu.response());
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('error', () => {});
  session.on('submit_sm', (pdu) => {
    id += 1;
    submits += 1;
    const mid = id.toString(16);
    session.send(pdu.response({ message_id: mid }));
    if (receipts) {
      session.deliver_sm({
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: 0x04,
        short_message: Buffer.from(`id:${mid} sub:001 dlvrd:001 submit date:2611220000 done date:2611220000 stat:DELIVRD err:000 text:`),
        receipted_message_id: mid,
        message_state: 2,
      }, () => { receiptCount += 1; });
    }
  });
});

let last = 0;
let t = 0;
setInterval(() => {
  t += 1;
  if (submits !== last) {
    console.log(`t=${t}s submit_sm/s=${submits - last} submit_sm=${submits} receipts=${receiptCount}`);
  }
  last = submits;
}, 1000);

server.listen(port, '127.0.0.1', () => console.log(`sink listening on 127.0.0.1:${server.address().port}`));
