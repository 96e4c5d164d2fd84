import FerryAgent
import Testing

@Test func agentHasAVersion() { #expect(!FerryAgentInfo.version.isEmpty) }
