import AirlockCommands
import AirlockRuntime

// The first instant of airlock's own code, for AIRLOCK_TIMING.
AirlockCommand.processStart = Timing.now()
AirlockCommand.main()
