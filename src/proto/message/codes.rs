//! The numbers of protocol v1 that are not messages (contract sections 3 and 4): command
//! codes, node types, AUTH_RESULT codes and KICK reasons. Both directions and the cluster use
//! them, so they live apart from the message structs.

/// Command numbers.
pub mod cmd {
    /// Node -> login: authenticate.
    pub const AUTH: u16 = 0x0001;
    /// Game node -> login: its info.
    pub const GAME_INFO: u16 = 0x0002;
    /// Cross node -> login: its info.
    pub const CROSS_INFO: u16 = 0x0003;
    /// Node -> login: heartbeat.
    pub const HEARTBEAT: u16 = 0x0004;
    /// Game node -> login: players online.
    pub const STATUS_REPORT: u16 = 0x0005;
    /// Login -> node: result of AUTH.
    pub const AUTH_RESULT: u16 = 0x8001;
    /// Login -> game node: its cross assignment.
    pub const CROSS_ASSIGN: u16 = 0x8002;
    /// Login -> cross node: its full member list.
    pub const CROSS_MEMBERS: u16 = 0x8003;
    /// Login -> node: heartbeat echo.
    pub const HEARTBEAT_ACK: u16 = 0x8004;
    /// Login -> game node: operator-set state.
    pub const STATUS_PUSH: u16 = 0x8005;
    /// Login -> game node: whitelist, possibly over several frames.
    pub const WHITELIST_SNAPSHOT: u16 = 0x8006;
    /// Login -> game node: one whitelist change.
    pub const WHITELIST_DELTA: u16 = 0x8007;
    /// Login -> node: kicked, the connection closes.
    pub const KICK: u16 = 0x80FF;
    /// First application-defined command.
    pub const APP_FIRST: u16 = 0x1000;
    /// Last application-defined command.
    pub const APP_LAST: u16 = 0x7FFF;

    /// The commands a node sends (the application range aside).
    pub const NODE_TO_LOGIN: [u16; 5] = [AUTH, GAME_INFO, CROSS_INFO, HEARTBEAT, STATUS_REPORT];
    /// The commands the login node sends.
    pub const LOGIN_TO_NODE: [u16; 8] = [
        AUTH_RESULT,
        CROSS_ASSIGN,
        CROSS_MEMBERS,
        HEARTBEAT_ACK,
        STATUS_PUSH,
        WHITELIST_SNAPSHOT,
        WHITELIST_DELTA,
        KICK,
    ];

    /// True for the application-defined range `0x1000..=0x7FFF`.
    pub fn is_app(cmd: u16) -> bool {
        (APP_FIRST..=APP_LAST).contains(&cmd)
    }
}

/// Node types (contract section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    /// A game (logic) node.
    Game = 1,
    /// A cross-server node.
    Cross = 2,
}

impl NodeType {
    /// The node type for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<NodeType> {
        match v {
            1 => Some(NodeType::Game),
            2 => Some(NodeType::Cross),
            _ => None,
        }
    }

    /// Lower-case name for logs and APIs.
    pub fn name(self) -> &'static str {
        match self {
            NodeType::Game => "game",
            NodeType::Cross => "cross",
        }
    }
}

/// AUTH_RESULT codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCode {
    /// Registered.
    Ok = 0,
    /// Bad signature.
    BadSignature = 1,
    /// `time` outside the auth window.
    BadTime = 2,
    /// Already online and the duplicate policy is `reject`.
    Duplicate = 3,
    /// Peer address not allowed.
    AddressNotAllowed = 4,
    /// Server full.
    ServerFull = 5,
    /// Unknown node_type or malformed AUTH.
    BadRequest = 6,
    /// This login node is a standby of its group: try another configured login node.
    Standby = 7,
}

impl AuthCode {
    /// The code for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<AuthCode> {
        Some(match v {
            0 => AuthCode::Ok,
            1 => AuthCode::BadSignature,
            2 => AuthCode::BadTime,
            3 => AuthCode::Duplicate,
            4 => AuthCode::AddressNotAllowed,
            5 => AuthCode::ServerFull,
            6 => AuthCode::BadRequest,
            7 => AuthCode::Standby,
            _ => return None,
        })
    }

    /// Short description for logs.
    pub fn describe(self) -> &'static str {
        match self {
            AuthCode::Ok => "ok",
            AuthCode::BadSignature => "bad signature",
            AuthCode::BadTime => "time outside auth window",
            AuthCode::Duplicate => "duplicate rejected",
            AuthCode::AddressNotAllowed => "address not allowed",
            AuthCode::ServerFull => "server full",
            AuthCode::BadRequest => "bad request",
            AuthCode::Standby => "standby: not the active login node of its group",
        }
    }
}

/// KICK reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Replaced by a newer login of the same node.
    Replaced = 1,
    /// Silent longer than heartbeat_timeout.
    HeartbeatTimeout = 2,
    /// An operator kicked it.
    Operator = 3,
    /// The login node is shutting down.
    Shutdown = 4,
    /// The node broke the protocol.
    ProtocolError = 5,
    /// This login node stopped being the active one of its group: connect to another.
    NotActive = 6,
}

impl KickReason {
    /// The reason for a wire value, if known.
    pub fn from_u8(v: u8) -> Option<KickReason> {
        Some(match v {
            1 => KickReason::Replaced,
            2 => KickReason::HeartbeatTimeout,
            3 => KickReason::Operator,
            4 => KickReason::Shutdown,
            5 => KickReason::ProtocolError,
            6 => KickReason::NotActive,
            _ => return None,
        })
    }

    /// Short description for logs.
    pub fn describe(self) -> &'static str {
        match self {
            KickReason::Replaced => "replaced by a newer login",
            KickReason::HeartbeatTimeout => "heartbeat timeout",
            KickReason::Operator => "operator kick",
            KickReason::Shutdown => "shutdown",
            KickReason::ProtocolError => "protocol error",
            KickReason::NotActive => "no longer the active login node of its group",
        }
    }
}
