// An unmodified @stomp/stompjs client: log in, subscribe to the user queue (client-individual acks), answer the
// message "ping from python" with "pong from stompjs" (with a receipt), then disconnect. Prints one line per event.
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [url, token, conv] = process.argv.slice(2);
const client = new Client({
  webSocketFactory: () => new WebSocket(url, ['v12.stomp']), // Node 20 has no global WebSocket
  connectHeaders: { login: 'stompjs-1', passcode: token },
  heartbeatIncoming: 30000,
  heartbeatOutgoing: 10000,
  reconnectDelay: 0,
});
const timer = setTimeout(() => { console.log('TIMEOUT'); process.exit(2); }, 20000);
client.onConnect = (frame) => {
  console.log(`CONNECTED ${frame.headers['user-name']} ${frame.headers.version}`);
  client.subscribe('/user/queue/messages', (m) => {
    const f = JSON.parse(m.body);
    console.log(`MESSAGE ${m.headers['wsim-type']}`);
    if (f.type === 'message.new' && f.msg.body.text === 'ping from python') {
      m.ack();
      client.publish({ destination: `/conv/${conv}`, body: 'pong from stompjs', headers: { cmid: 'js-1', receipt: 'r-1' } });
    }
  }, { ack: 'client-individual', receipt: 'sub-1' });
  client.watchForReceipt('sub-1', () => console.log('READY'));
  client.watchForReceipt('r-1', () => {
    console.log('RECEIPT r-1');
    clearTimeout(timer);
    client.deactivate().then(() => process.exit(0));
  });
};
client.onStompError = (frame) => { console.log(`ERROR ${frame.headers.message}`); process.exit(1); };
client.activate();
