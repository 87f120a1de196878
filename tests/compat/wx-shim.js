// A small stand-in for the WeChat mini-program socket API (wx.connectSocket and its SocketTask),
// over the `ws` package: this is all weapp.socket.io needs to run in Node as it runs in WeChat.
'use strict';
const WebSocket = require('ws');

function connectSocket({ url, header, protocols }) {
  const ws = new WebSocket(url, protocols || [], { headers: header || {} });
  const on = (event, wrap) => (callback) => ws.on(event, (...args) => callback(wrap(...args)));
  return {
    onOpen: on('open', () => ({ header: {} })),
    onClose: on('close', (code, reason) => ({ code, reason: String(reason || '') })),
    onError: on('error', (error) => ({ errMsg: String(error && error.message) })),
    // WeChat hands text frames over as strings and binary ones as ArrayBuffers.
    onMessage: on('message', (data, isBinary) => ({
      data: isBinary ? new Uint8Array(data).buffer : data.toString(),
    })),
    send({ data, success, fail }) {
      ws.send(data, (error) => (error ? fail && fail({ errMsg: error.message }) : success && success({})));
    },
    close({ code, reason, success } = {}) {
      ws.close(code || 1000, reason);
      if (success) success({});
    },
  };
}

global.wx = { connectSocket };
// The library's UMD wrapper reads `window` at load time; the mini-program runtime provides one.
if (typeof global.window === 'undefined') global.window = {};
module.exports = global.wx;
