import FerryAgent

print("ferryd \(FerryAgentInfo.version): not implemented yet")
