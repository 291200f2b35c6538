//! A small blocking Kafka-protocol client for tests: encodes requests and decodes responses
//! with the `kafka-protocol` crate, over a plain `TcpStream`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// One Kafka connection.
pub struct KafkaConn {
    stream: TcpStream,
    next_id: i32,
}

impl KafkaConn {
    pub fn connect(addr: SocketAddr) -> KafkaConn {
        let stream = TcpStream::connect(addr).expect("connect to the Kafka port");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        KafkaConn { stream, next_id: 1 }
    }

    /// Sends `request` as `api` v`version` and returns the decoded response.
    pub fn call<Req: Encodable, Resp: Decodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> Resp {
        let id = self.send(api, version, request);
        self.receive(api, version, id)
    }

    /// Sends a request; returns its correlation id.
    pub fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("strand-test"));
        let mut body = BytesMut::new();
        header.encode(&mut body, api.request_header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        self.send_raw(&body);
        id
    }

    /// Sends `body` behind its size prefix.
    pub fn send_raw(&mut self, body: &[u8]) {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).unwrap();
    }

    /// Reads the response to request `id`, which must be the next one on the connection.
    pub fn receive<Resp: Decodable>(&mut self, api: ApiKey, version: i16, id: i32) -> Resp {
        let mut frame = self.read_frame().expect("a response frame");
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id, "responses come in request order");
        let response = Resp::decode(&mut frame, version).unwrap();
        assert!(frame.is_empty(), "{} bytes after the response body", frame.len());
        response
    }

    /// The next response frame (without its size), or `None` once the node closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True once the node has closed the connection (reads EOF or a reset within a few seconds).
    pub fn is_closed(&mut self) -> bool {
        self.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// A `TopicName` for a request.
pub fn topic(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(name.to_string()))
}
