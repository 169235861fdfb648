// The example app's backend: the part of an app that holds the producer library, and with it
// the RabbitMQ and Redis credentials a browser must never see. It answers the page's one
// question, "where is the signed-in user connected right now?", from the relays' presence.
//
//   import { Producer } from 'inbox-relay/producer';
//   const producer = new Producer({ url: RABBITMQ_URL, redis: REDIS_URL });
//   const handle = createBackend({ producer, jwtSecret: JWT_SECRET });
//   http.createServer((request, response) => handle(request, response) || serveThePage(request, response));
//
// GET /api/presence, with the user's relay token as bearer, answers
// {"online":true,"connections":[{"device":"react example","node":"n1","since":1764460000000}]}.
// A real app would know its user from its own session; the example reuses the relay token so
// that it needs nothing else (the relay's JWT_SECRET verifies it).
import jwt from 'jsonwebtoken';

function send(response, status, body) {
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(body));
}

export function createBackend({ producer, jwtSecret }) {
  // Returns false for requests it does not serve, so the caller can serve them.
  return function handle(request, response) {
    if ((request.url ?? '').split('?')[0] !== '/api/presence') return false;
    if (request.method !== 'GET') {
      send(response, 405, { error: 'GET only' });
      return true;
    }
    const bearer = /^Bearer (.+)$/.exec(request.headers.authorization ?? '');
    let user;
    try {
      user = bearer ? jwt.verify(bearer[1], jwtSecret, { algorithms: ['HS256'] }).sub : undefined;
    } catch {
      user = undefined;
    }
    if (typeof user !== 'string') {
      send(response, 401, { error: 'a valid token is needed' });
      return true;
    }
    producer.presence(user).then(
      ({ online, connections, lastSeen }) => send(response, 200, { online, connections, lastSeen }),
      () => send(response, 503, { error: 'presence is unavailable; try again' }),
    );
    return true;
  };
}
