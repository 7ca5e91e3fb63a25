// libprotobuf's log lines through moegraph's log, rate-limited: each request
// with an invalid UTF-8 string makes libprotobuf log an error, so a client
// could otherwise fill the log (and the disk) at line rate.
#pragma once

namespace moegraph {

// Installs the handler process-wide: at most `lines_per_minute` libprotobuf
// lines a minute; the first line after a suppressed stretch says how many
// were dropped. Call once, before serving.
void InstallProtobufLogLimit(int lines_per_minute);

}  // namespace moegraph
